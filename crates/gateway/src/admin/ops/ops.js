// The operations page: polls /ops/state every second and draws it. Rows
// are kept and updated in place, so a drain button is never replaced
// under the pointer. Every value goes in as text, never as HTML.
'use strict';

const EVERY_MS = 1000;
const rows = new Map();

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function table(headings) {
  const t = el('table');
  const head = el('tr');
  for (const h of headings) head.append(el('th', {}, h));
  const thead = el('thead');
  thead.append(head);
  t.append(thead, el('tbody'));
  return t;
}

function ms(value) {
  if (value === null || value === undefined) return '–';
  return value < 10 ? value.toFixed(2) + ' ms' : Math.round(value) + ' ms';
}

function percent(value) {
  return value === null || value === undefined ? '–' : (100 * value).toFixed(1) + ' %';
}

function status(text, stale) {
  const node = document.getElementById('status');
  node.textContent = text;
  node.classList.toggle('stale', stale);
}

async function post(url) {
  const res = await fetch(url, { method: 'POST', credentials: 'same-origin' });
  if (res.status === 401) {
    location.assign('/ops/login');
    return;
  }
  if (!res.ok) status('the gateway refused: ' + res.status, true);
  refresh(false);
}

function poolTable(pool) {
  let section = document.querySelector(`section.pool[data-pool="${CSS.escape(pool)}"]`);
  if (!section) {
    section = el('section', { class: 'pool', 'data-pool': pool });
    section.append(el('h3', {}, 'pool ' + pool));
    section.append(table(['backend', 'state', 'in flight', 'req/s', 'errors', 'p50', 'p99', 'ejections', '']));
    document.getElementById('pools').append(section);
  }
  return section.querySelector('tbody');
}

function backendRow(pool, backend) {
  const key = pool + '\n' + backend;
  let row = rows.get(key);
  if (!row) {
    const tr = el('tr', { 'data-pool': pool, 'data-backend': backend });
    const cells = {};
    for (const name of ['backend', 'state', 'in_flight', 'rps', 'errors', 'p50', 'p99', 'ejections']) {
      cells[name] = el('td', { class: name });
      tr.append(cells[name]);
    }
    const action = el('td');
    const button = el('button', { type: 'button', class: 'drain' });
    button.addEventListener('click', () => {
      const verb = button.dataset.action;
      const path = `/ops/pools/${encodeURIComponent(pool)}/backends/${encodeURIComponent(backend)}/${verb}`;
      post(path);
    });
    action.append(button);
    tr.append(action);
    poolTable(pool).append(tr);
    row = { tr, cells, button };
    rows.set(key, row);
  }
  return row;
}

function drawPools(pools) {
  const seen = new Set();
  for (const pool of pools) {
    for (const b of pool.backends) {
      seen.add(pool.pool + '\n' + b.backend);
      const { cells, button } = backendRow(pool.pool, b.backend);
      cells.backend.textContent = b.backend + (b.backup ? ' (backup)' : '') + (b.warming !== null ? ' (warming)' : '');
      cells.state.textContent = b.state;
      cells.state.className = 'state state-' + b.state;
      cells.in_flight.textContent = b.in_flight;
      cells.rps.textContent = b.requests_per_second.toFixed(1);
      cells.errors.textContent = percent(b.error_rate);
      cells.p50.textContent = ms(b.p50_ms);
      cells.p99.textContent = ms(b.p99_ms);
      cells.ejections.textContent = b.ejections;
      button.dataset.action = b.draining ? 'undrain' : 'drain';
      button.textContent = b.draining ? 'Undrain' : 'Drain';
    }
  }
  for (const [key, row] of rows) {
    if (!seen.has(key)) {
      row.tr.remove();
      rows.delete(key);
    }
  }
  for (const section of document.querySelectorAll('section.pool')) {
    if (!section.querySelector('tbody tr')) section.remove();
  }
}

function drawSale(sale) {
  const box = document.getElementById('sale');
  const parts = [];
  if (sale === null) {
    parts.push(el('p', { class: 'hint' }, 'No shop configured: set [ops] shop_pool in the gateway configuration.'));
  } else if (!sale.available) {
    parts.push(el('p', { class: 'unavailable' }, 'Shop unavailable: ' + sale.error));
  } else {
    const stock = table(['sku', 'initial', 'stock left', 'reserved', 'paying', 'paid', 'confirmed', 'expired', 'cancelled', 'payment failed']);
    for (const s of sale.skus || []) {
      const tr = el('tr', { 'data-sku': s.sku });
      for (const v of [s.sku, s.initial_stock, s.stock_left, s.reserved, s.paying, s.paid, s.confirmed, s.expired, s.cancelled, s.payment_failed]) {
        tr.append(el('td', {}, String(v)));
      }
      stock.querySelector('tbody').append(tr);
    }
    const queues = table(['queue', 'ready', 'scheduled', 'running', 'dead']);
    for (const q of sale.queues || []) {
      const tr = el('tr', { 'data-queue': q.queue });
      for (const v of [q.queue, q.ready, q.scheduled, q.running, q.dead]) tr.append(el('td', {}, String(v)));
      queues.querySelector('tbody').append(tr);
    }
    parts.push(el('h3', {}, 'Stock and orders by status'), stock);
    parts.push(el('h3', {}, 'Job queues'));
    parts.push((sale.queues || []).length > 0 ? queues : el('p', { class: 'hint' }, 'No job waiting, running or dead.'));
    parts.push(el('p', { class: 'hint' }, 'as read from ' + sale.node));
  }
  box.replaceChildren(...parts);
}

async function refresh(again = true) {
  try {
    const res = await fetch('/ops/state', { credentials: 'same-origin', cache: 'no-store' });
    if (res.status === 401) {
      location.assign('/ops/login');
      return;
    }
    if (!res.ok) throw new Error('/ops/state answered ' + res.status);
    const state = await res.json();
    document.getElementById('window').textContent = state.window_seconds;
    drawPools(state.pools);
    drawSale(state.sale);
    status('updated ' + new Date().toLocaleTimeString(), false);
  } catch (error) {
    status('no answer from the gateway: ' + error.message, true);
  } finally {
    if (again) setTimeout(refresh, EVERY_MS);
  }
}

document.addEventListener('DOMContentLoaded', () => refresh());

// The storefront's one script. Every page works without it; it adds the
// live parts: the stock polled once a second, the countdown to the sale,
// buying without a reload (the buy button turns into the order's status),
// and an order's status polled until it settles. No inline script, no
// framework, no build step: the page's data comes in data-* attributes,
// and every word shown is in the HTML the server rendered.
'use strict';

(() => {
  const POLL_MS = 1000;
  const SETTLED = ['confirmed', 'expired', 'cancelled', 'payment_failed'];

  // The server's clock minus ours, so countdowns agree with the server.
  const skewOf = (element) => Number(element.dataset.now) - Date.now();

  const clock = (ms) => {
    const secs = Math.ceil(Math.max(ms, 0) / 1000);
    const h = Math.floor(secs / 3600);
    const m = Math.floor(secs / 60) % 60;
    const s = String(secs % 60).padStart(2, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
  };

  const getJson = async (url) => {
    const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
    return response.ok ? response.json() : null;
  };

  // Calls `step` now and then every POLL_MS after the last call ended, so
  // polls never overlap, until it returns false.
  const every = (step) => {
    const tick = async () => {
      let again = true;
      try {
        again = await step();
      } catch {
        // A failed poll (the network, a node restarting) is retried.
      }
      if (again !== false) setTimeout(tick, POLL_MS);
    };
    tick();
  };

  function watchOrder(panel) {
    const skew = skewOf(panel);
    const timeLeft = panel.querySelector('[data-time-left]');
    const show = (status) => {
      panel.dataset.status = status;
      for (const el of panel.querySelectorAll('[data-when]')) {
        el.hidden = el.dataset.when !== status;
      }
    };
    setInterval(() => {
      if (panel.dataset.status === 'reserved' && panel.dataset.expiresAt) {
        timeLeft.textContent = clock(Number(panel.dataset.expiresAt) - (Date.now() + skew));
      }
    }, 250);
    every(async () => {
      const id = panel.dataset.order;
      const order = await getJson(`/api/v1/orders/${encodeURIComponent(id)}`);
      if (order) {
        panel.dataset.expiresAt = Date.parse(order.expires_at);
        show(order.status);
      }
      return !SETTLED.includes(panel.dataset.status);
    });
  }

  // Fills the empty panel of a product page with a new order.
  function openPanel(panel, id) {
    const base = `/orders/${encodeURIComponent(id)}`;
    panel.dataset.order = id;
    panel.dataset.status = 'reserved';
    delete panel.dataset.expiresAt;
    for (const form of panel.querySelectorAll('form[data-action]')) {
      form.action = `${base}/${form.dataset.action}`;
    }
    panel.querySelector('[data-order-link]').href = base;
    panel.querySelector('[data-order-id]').textContent = id;
    panel.hidden = false;
    watchOrder(panel);
  }

  function product(article) {
    const skew = skewOf(article);
    const startsAt = Number(article.dataset.startsAt);
    const buy = article.querySelector('form.buy');
    const button = buy.querySelector('button');
    const panel = article.querySelector('section.order');
    const countdown = article.querySelector('.countdown');
    let soldOut = !article.querySelector('.sold-out').hidden;

    const started = () => Date.now() + skew >= startsAt;
    const refuse = (code) => {
      for (const el of article.querySelectorAll('[data-refusal]')) {
        el.hidden = el.dataset.refusal !== code;
      }
    };
    const update = () => {
      countdown.hidden = started();
      button.disabled = !started() || soldOut;
    };

    const tick = setInterval(() => {
      article.querySelector('[data-countdown]').textContent = clock(startsAt - (Date.now() + skew));
      update();
      if (started()) clearInterval(tick);
    }, 250);

    every(async () => {
      const p = await getJson(`/api/v1/products/${encodeURIComponent(article.dataset.sku)}`);
      if (p) {
        soldOut = p.sold_out;
        article.querySelector('[data-stock]').textContent = p.stock_left;
        article.querySelector('.sold-out').hidden = !soldOut;
        article.querySelector('.left').hidden = soldOut;
        update();
      }
    });

    // The form posts as it would without the script, and the redirect it
    // answers says what happened: an order, a refusal, or the login form.
    buy.addEventListener('submit', async (event) => {
      event.preventDefault();
      button.disabled = true;
      const response = await fetch(buy.action, {
        method: 'POST',
        body: new URLSearchParams(new FormData(buy)),
        credentials: 'same-origin',
      });
      const landed = new URL(response.url);
      const order = landed.pathname.match(/^\/orders\/([^/]+)$/);
      const code = landed.searchParams.get('error');
      if (response.ok && order) {
        refuse(null);
        buy.hidden = true;
        openPanel(panel, decodeURIComponent(order[1]));
      } else if (response.ok && code) {
        refuse(code);
        update();
      } else {
        window.location.assign(landed.href);
      }
    });
  }

  const article = document.querySelector('article.product[data-sku]');
  if (article) product(article);
  for (const panel of document.querySelectorAll('section.order[data-order]:not([hidden])')) {
    watchOrder(panel);
  }
})();

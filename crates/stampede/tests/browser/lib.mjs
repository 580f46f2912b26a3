// What every browser scenario shares: Debian's Chromium started headless by
// playwright-core (no browser download), a fresh context whose relative URLs
// resolve against the gateway under test, and the evidence a failure needs.
//
// A scenario fails, and the process exits 1, when its body throws, when the
// page throws an uncaught error, or when the browser reports a console error
// (a Content-Security-Policy violation shows up only there). On failure the
// page is saved as a full-page screenshot and its HTML beside it, in
// STAMPEDE_SCREENSHOTS, and the paths are printed for the Rust test to show.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** How long any single wait may take unless a scenario says otherwise. */
const TIMEOUT_MS = 15_000;

export async function scenario(name, body) {
  const browser = await chromium.launch({
    executablePath: process.env.STAMPEDE_CHROMIUM,
    headless: true,
    // Containers (and CI as root) cannot give Chromium its sandbox.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ baseURL: process.env.STAMPEDE_BASE_URL });
  context.setDefaultTimeout(TIMEOUT_MS);
  const problems = [];
  const watch = (page) => {
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      // Chromium asks for /favicon.ico by itself; its 404 is nobody's bug.
      if (message.type() !== 'error' || message.location().url?.endsWith('/favicon.ico')) return;
      problems.push(`console error: ${message.text()} (${message.location().url ?? page.url()})`);
    });
  };
  context.on('page', watch);
  const page = await context.newPage();
  let failure = null;
  try {
    await body({ page, context, browser });
    if (problems.length > 0) throw new Error('the browser reported errors (below)');
  } catch (error) {
    failure = error;
  }
  if (failure) {
    await keepEvidence(name, context, failure, problems);
    process.exitCode = 1;
  } else {
    console.log(`scenario ${name}: passed`);
  }
  await browser.close();
}

async function keepEvidence(name, context, failure, problems) {
  const dir = process.env.STAMPEDE_SCREENSHOTS ?? '.';
  mkdirSync(dir, { recursive: true });
  console.error(`scenario ${name} FAILED: ${failure.stack ?? failure}`);
  if (problems.length > 0) console.error(`browser reported:\n${problems.join('\n')}`);
  for (const [index, page] of context.pages().entries()) {
    const base = join(dir, `${name}-${index}`);
    try {
      await page.screenshot({ path: `${base}.png`, fullPage: true });
      writeFileSync(`${base}.html`, await page.content());
      console.error(`page ${index} (${page.url()}): screenshot ${base}.png, HTML ${base}.html`);
    } catch (error) {
      console.error(`page ${index}: no screenshot (${error.message})`);
    }
  }
}

/** Waits until `locator`'s text matches `pattern`, naming both on timeout. */
export async function waitForText(locator, pattern, timeout = TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let last = '';
  while (Date.now() < deadline) {
    last = (await locator.textContent({ timeout }).catch(() => '')) ?? '';
    if (pattern.test(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`waited ${timeout} ms for ${locator} to match ${pattern}; last text: ${JSON.stringify(last)}`);
}

/** Throws with `message` unless `condition` holds. */
export function check(condition, message) {
  if (!condition) throw new Error(message);
}

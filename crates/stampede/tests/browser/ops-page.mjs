// The gateway's operations page in a real browser: log in with the admin
// token, see both shop nodes up and the sale, drain one with its button and
// undrain it, then kill the other node's process and watch it go down.
//
// STAMPEDE_BASE_URL is the gateway's admin listener; STAMPEDE_ADMIN_TOKEN
// the token to type; STAMPEDE_DRAIN the backend to drain; STAMPEDE_KILL the
// backend to kill and STAMPEDE_KILL_PID its process; STAMPEDE_SKU a product
// on sale with STAMPEDE_STOCK units left.
import { check, scenario, waitForText } from './lib.mjs';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

await scenario('ops-page', async ({ page }) => {
  const login = await page.goto('/ops');
  check(login.ok(), `GET /ops answered ${login.status()}`);
  check(new URL(page.url()).pathname === '/ops/login', `not sent to the login form: ${page.url()}`);
  await page.fill('#token', env('STAMPEDE_ADMIN_TOKEN'));
  await Promise.all([page.waitForURL('**/ops'), page.getByRole('button', { name: 'Log in' }).click()]);

  const row = (backend) => page.locator(`tr[data-backend="${backend}"]`);
  const state = (backend) => row(backend).locator('td.state');
  const [drained, doomed] = [env('STAMPEDE_DRAIN'), env('STAMPEDE_KILL')];
  await waitForText(state(drained), /^up$/);
  await waitForText(state(doomed), /^up$/);
  const rps = await row(doomed).locator('td.rps').textContent();
  check(/^\d+\.\d$/.test(rps), `requests/s is a number: ${rps}`);

  // The sale, as the shop pool reports it.
  const sku = page.locator(`#sale tr[data-sku="${env('STAMPEDE_SKU')}"] td`);
  await waitForText(sku.nth(2), new RegExp(`^${env('STAMPEDE_STOCK')}$`));
  await waitForText(page.locator('#sale'), /Job queues/);

  // Drain and undrain with the row's button.
  const button = row(drained).locator('button.drain');
  await waitForText(button, /^Drain$/);
  await button.click();
  await waitForText(state(drained), /^draining$/);
  await waitForText(button, /^Undrain$/);
  await button.click();
  await waitForText(state(drained), /^up$/);

  // A node dies: the page shows it down within a few health checks.
  process.kill(Number(env('STAMPEDE_KILL_PID')), 'SIGKILL');
  await waitForText(state(doomed), /^down$/, 10_000);
  await waitForText(state(drained), /^up$/);
  await waitForText(sku.nth(2), new RegExp(`^${env('STAMPEDE_STOCK')}$`));
});

// The storefront with JavaScript off: every step is a form that posts and
// redirects. Log in, buy, see the reservation, pay, and reload until the
// worker has confirmed the order; then cancel is refused on it.
import { check, scenario, waitForText } from './lib.mjs';

const CONFIRM_WITHIN_MS = 30_000;

await scenario('storefront-nojs', async ({ browser }) => {
  const context = await browser.newContext({
    baseURL: process.env.STAMPEDE_BASE_URL,
    javaScriptEnabled: false,
  });
  const page = await context.newPage();
  await page.goto('/products/NOJS-1');
  await Promise.all([page.waitForURL('**/login?next=*'), page.click('form.buy button')]);
  await page.fill('input[name=username]', process.env.STAMPEDE_USER);
  await page.fill('input[name=password]', process.env.STAMPEDE_PASSWORD);
  await Promise.all([page.waitForURL('**/products/NOJS-1'), page.click('form.login button')]);

  await Promise.all([page.waitForURL('**/orders/ord*'), page.click('form.buy button')]);
  const status = page.locator('section.order .status:not([hidden])');
  await waitForText(status, /Reserved for you: \d+:\d\d left to pay/);

  await Promise.all([page.waitForURL('**/orders/ord*'), page.click('form.pay button')]);
  const deadline = Date.now() + CONFIRM_WITHIN_MS;
  let text = await status.textContent();
  while (!/Confirmed/.test(text) && Date.now() < deadline) {
    await page.waitForTimeout(500);
    await page.reload();
    text = await status.textContent();
  }
  check(/Confirmed/.test(text), `the order never showed confirmed: ${text}`);

  await page.goto('/orders');
  await waitForText(page.locator('table.orders'), /confirmed/);
  check((await page.locator('table.orders form.pay').count()) === 0, 'a confirmed order can be paid');
  await context.close();
});

// A buyer's whole visit: log in, wait for the countdown, buy in place, see
// the reservation with its time left, pay, watch the order confirmed; a
// second buy meets the per-user limit; a sold-out product says so; a
// product named like a script shows as text and opens no dialog.
import { check, scenario, waitForText } from './lib.mjs';

const visible = (page, selector) => page.locator(`${selector}:not([hidden])`);

await scenario('storefront-buy', async ({ page }) => {
  const dialogs = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss();
  });

  await page.goto('/login?next=/products/SOON-1');
  await page.fill('input[name=username]', process.env.STAMPEDE_USER);
  await page.fill('input[name=password]', process.env.STAMPEDE_PASSWORD);
  await Promise.all([page.waitForURL('**/products/SOON-1'), page.click('form.login button')]);
  await waitForText(page.locator('header nav'), new RegExp(process.env.STAMPEDE_USER));

  // The countdown runs, the button waits for it.
  const buy = page.locator('form.buy button');
  await waitForText(visible(page, '.countdown'), /The sale starts in \d+:\d\d/);
  check(await buy.isDisabled(), 'the buy button is enabled before the sale');
  await waitForText(page.locator('[data-stock]'), /^5$/);
  await page.waitForFunction(() => !document.querySelector('form.buy button').disabled, null, {
    timeout: 20_000,
  });
  check(await page.locator('.countdown').isHidden(), 'the countdown is still shown');

  // Buying turns the button into the order's status, in place.
  await buy.click();
  const status = visible(page, 'section.order .status');
  const reserved = await waitForText(status, /Reserved for you: \d+:\d\d left to pay/);
  check(await page.locator('form.buy').isHidden(), 'the buy form is still shown');
  check(page.url().endsWith('/products/SOON-1'), `the page changed: ${page.url()}`);
  await waitForText(page.locator('[data-stock]'), /^4$/);

  // Paying (tok_ok, the first card) leads to the order's page, where the
  // worker's jobs move it to confirmed.
  await Promise.all([page.waitForURL('**/orders/ord*'), page.click('form.pay button')]);
  await waitForText(visible(page, 'section.order .status'), /Confirmed/, 30_000);

  // A second buy of a one-per-customer product: the limit, explained.
  await page.goto('/products/SOON-1');
  await page.waitForFunction(() => !document.querySelector('form.buy button').disabled);
  await page.click('form.buy button');
  await waitForText(visible(page, '[data-refusal]'), /as many of these as one customer may buy/);
  check(await page.locator('section.order').isHidden(), 'a second order was shown');

  // Sold out.
  await page.goto('/products/GONE-1');
  await waitForText(visible(page, '.sold-out'), /Sold out/);
  check(await buy.isDisabled(), 'a sold-out product can be bought');

  // A hostile name is text.
  await page.goto('/products/XSS-1');
  await waitForText(page.locator('h1'), /^<script>alert\(1\)<\/script>$/);
  await page.goto('/');
  await waitForText(page.locator('ul.products'), /<script>alert\(1\)<\/script>/);
  await page.waitForTimeout(500);
  check(dialogs.length === 0, `a dialog opened: ${dialogs}`);
  console.log(`reservation shown as: ${reserved}`);
});

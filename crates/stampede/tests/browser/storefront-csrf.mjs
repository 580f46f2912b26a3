// A logged-in buyer visits another site whose page posts a forged buy form
// to the shop: the shop refuses it (no token, and the browser says where it
// came from), and nothing is reserved. The attacker's page is served by the
// browser itself (a routed URL on another host), in a second context of
// the same browser with the buyer's cookies, so that the refusal's status
// is what is checked rather than a console line.
import { check, scenario } from './lib.mjs';

const EVIL = 'http://evil.test/';

await scenario('storefront-csrf', async ({ page, context, browser }) => {
  const base = process.env.STAMPEDE_BASE_URL;
  await page.goto('/login');
  await page.fill('input[name=username]', process.env.STAMPEDE_USER);
  await page.fill('input[name=password]', process.env.STAMPEDE_PASSWORD);
  await Promise.all([page.waitForURL((url) => url.pathname === '/'), page.click('form.login button')]);

  const attacker = await browser.newContext();
  await attacker.addCookies(await context.cookies());
  const evil = await attacker.newPage();
  await evil.route(EVIL, (route) =>
    route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><form method="post" action="${base}/products/CSRF-1/buy">
        <input name="csrf_token" value="forged"><button>Win a prize</button></form>`,
    }),
  );
  await evil.goto(EVIL);
  const [refused] = await Promise.all([
    evil.waitForResponse((r) => r.url().endsWith('/products/CSRF-1/buy')),
    evil.click('button'),
  ]);
  check(refused.status() === 403, `the forged form got ${refused.status()}`);
  await evil.waitForLoadState();
  const text = await evil.textContent('body');
  check(/could not be accepted/.test(text), `the refusal page says: ${text}`);
  await attacker.close();

  // The buyer's own page still works: the session survived.
  await page.goto('/orders');
  check((await page.textContent('h1')) === 'My orders', 'the buyer was logged out');
});

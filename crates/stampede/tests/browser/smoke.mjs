// The harness itself: Chromium starts, loads a page from the server under
// test, and the page's text arrives. Run against any URL that answers HTML.
import { check, scenario } from './lib.mjs';

await scenario('smoke', async ({ page }) => {
  const response = await page.goto('/index.html');
  check(response.ok(), `GET /index.html answered ${response.status()}`);
  const text = await page.textContent('body');
  check(text.includes(process.env.STAMPEDE_EXPECT), `page lacks ${process.env.STAMPEDE_EXPECT}: ${text}`);
});

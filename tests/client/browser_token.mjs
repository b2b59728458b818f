// A browser token in Chromium: docs/browser-token.html, served from the app's origin, calls
// Goinfer with the token its server handed out; the same page and token from another origin is
// refused by CORS. Environment: GOINFER (base URL), APP and OTHER (the two sites' origins; both
// serve the page and a goinfer-token file). Prints one JSON line of what each page saw.
import { launch } from './browser.mjs';

const browser = await launch();
const result = {};
try {
  for (const [name, origin, model] of [['app', process.env.APP, 'tiny-a'],
    ['other', process.env.OTHER, 'tiny-a'], ['model_b', process.env.APP, 'tiny-b']]) {
    const page = await browser.newPage();
    await page.goto(`${origin}/browser-token.html`);
    if (model !== 'tiny-a') { // the same page asking for a model outside the token's
      result[name] = await page.evaluate(async ([g, m]) => {
        const { token } = await (await fetch('/goinfer-token')).json();
        const r = await fetch(g + '/v1/chat/completions', { method: 'POST',
          headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
          body: JSON.stringify({ model: m, max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }) });
        return { status: r.status };
      }, [process.env.GOINFER, model]);
      continue;
    }
    await page.click('#go');
    await page.waitForFunction(() => document.getElementById('out').textContent !== '', null,
      { timeout: 60000 });
    const text = await page.textContent('#out');
    result[name] = text.startsWith('error: ') ? { error: text }
      : /^\d{3}: /.test(text) ? { status: Number(text.slice(0, 3)), message: text }
        : { status: 200, content: text };
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));

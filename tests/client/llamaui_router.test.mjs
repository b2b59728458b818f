// llama.cpp's own web UI at / in its multi-model (router) mode, in Debian's Chromium: goinfer's
// GET /props says "role":"router", so the UI offers a model picker fed by /v1/models; picking
// the second model loads it (POST /models/load) with its load bar, and the chat that follows
// goes to it.
// Environment: GOINFER_ORIGIN, GOINFER_KEY, FIRST, SECOND (model ids), SCREENSHOT (optional).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch } from './browser.mjs';

test('the model picker lists every model and a picked model answers', async () => {
  const { GOINFER_ORIGIN, GOINFER_KEY, FIRST, SECOND, SCREENSHOT } = process.env;
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(m.text()));
    await page.goto(GOINFER_ORIGIN + '/');
    await page.getByText('Enter API Key').click();
    await page.locator('input').first().fill(GOINFER_KEY);
    await page.getByText('Save & Retry').click();
    await page.getByText(FIRST, { exact: true }).first().click(); // the picker's button
    const menu = page.getByRole('menu').last();
    await menu.getByText(SECOND, { exact: true }).waitFor();
    assert.ok(consoleLines.some((l) => l.includes('ROUTER mode')), consoleLines.join('\n'));
    const load = page.waitForResponse((r) => r.url().endsWith('/models/load'));
    await menu.getByText(SECOND, { exact: true }).click();
    // the load bar (llama.cpp's ModelLoadHighlight, fed by /models/sse) while the model loads
    const bar = page.locator('div.animate-pulse.bg-primary');
    await bar.first().waitFor({ state: 'attached', timeout: 15000 });
    let done = false;
    const widths = [];
    const loaded = load.finally(() => { done = true; });
    while (!done) { // what the bar shows as the load goes (0% is there, but zero wide)
      const w = await bar.first().evaluate((e) => e.style.width).catch(() => null);
      if (w) widths.push(w);
      await page.waitForTimeout(100);
    }
    const resp = await loaded;
    assert.equal(resp.status(), 200);
    assert.ok(widths.length > 0 && widths.every((w) => /^\d+%$/.test(w)), widths.join(' '));
    console.log('# load bar widths: ' + [...new Set(widths)].join(' '));
    assert.equal(JSON.parse(resp.request().postData()).model, SECOND);
    await page.locator('textarea').first().fill('Hello');
    const reply = page.waitForResponse((r) => r.url().endsWith('/v1/chat/completions'));
    await page.keyboard.press('Enter');
    const r = await reply;
    await r.finished();
    assert.equal(r.status(), 200);
    assert.equal(JSON.parse(r.request().postData()).model, SECOND);
    await page.getByText(/t\/s/).last().waitFor({ timeout: 30000 });
    if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT });
  } finally {
    await browser.close();
  }
});

// llama.cpp's own web UI, served by goinfer at / (static files with no model started, or a
// user's own llama-server's page, proxied), in
// Debian's Chromium: it asks for the API key, then chats through goinfer with a real
// llama-server. Environment: GOINFER_ORIGIN, GOINFER_KEY, SCREENSHOT (optional).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch } from './browser.mjs';

test('llama.cpp web UI at / chats through goinfer', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const chats = [];
    page.on('response', (r) => {
      if (r.url().endsWith('/v1/chat/completions')) chats.push(r.status());
    });
    await page.goto(process.env.GOINFER_ORIGIN + '/');
    await page.getByText('Enter API Key').click(); // the page itself needs no key; the API does
    await page.locator('input').first().fill(process.env.GOINFER_KEY);
    await page.getByText('Save & Retry').click();
    await page.locator('textarea').first().fill('Hello');
    const reply = page.waitForResponse((r) => r.url().endsWith('/v1/chat/completions'));
    await page.keyboard.press('Enter');
    const r = await reply;
    await r.finished(); // the whole stream, through goinfer
    assert.equal(r.status(), 200);
    await page.getByText(/t\/s/).last().waitFor({ timeout: 30000 });
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
    assert.deepEqual(chats, [200]);
  } finally {
    await browser.close();
  }
});

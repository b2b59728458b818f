// Goinfer's /ui page in Debian's Chromium, driven by playwright-core (never a downloaded
// browser). Environment: GOINFER_ORIGIN (http://host:port), GOINFER_KEY, GOINFER_MODEL,
// SCREENSHOT (optional path).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch } from './browser.mjs';

const origin = process.env.GOINFER_ORIGIN;

test('the /ui page lists models, running children and live logs', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(origin + '/ui');
    // without a key the page says what is wrong
    await page.waitForFunction(() => document.getElementById('status').textContent.includes('API key'));
    await page.fill('#key', process.env.GOINFER_KEY);
    await page.click('#save');
    await page.waitForFunction((m) => document.querySelector('#models tbody').textContent.includes(m),
      process.env.GOINFER_MODEL);
    const row = await page.textContent('#models tbody');
    assert.match(row, /llama/);
    await page.waitForFunction((m) => document.querySelector('#running tbody').textContent.includes(m),
      process.env.GOINFER_MODEL, { timeout: 20000 });
    await page.waitForFunction(() => document.getElementById('logs').textContent.includes('listening on'));
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    await page.click('#unload');
    await page.waitForFunction(() => document.querySelector('#running tbody').children.length === 0,
      null, { timeout: 20000 });
  } finally {
    await browser.close();
  }
});

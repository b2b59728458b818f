// Goinfer's admin app at /ui in Debian's Chromium, driven by playwright-core (never a downloaded
// browser): the key, the Models page kept current by the one live feed (no polling), the Logs
// page without doubled lines. Environment: GOINFER_ORIGIN (http://host:port), GOINFER_KEY,
// GOINFER_MODEL (a model that runs), SCREENSHOT (optional path).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch } from './browser.mjs';

const origin = process.env.GOINFER_ORIGIN;
const model = process.env.GOINFER_MODEL;
const stateOf = (page, id) => page.locator(`#models tr[data-id="${id}"] td:nth-child(2)`);

test('the admin app lists models, follows their state and the log', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const requests = [];
    page.on('request', (r) => requests.push(r.url().replace(origin, '')));
    await page.goto(origin + '/ui');
    // without a key the page says what to enter
    await page.waitForFunction(() => document.getElementById('status').textContent.includes('admin API key'));
    await page.fill('#key', process.env.GOINFER_KEY);
    await page.click('#keyform button');
    await page.locator(`#models tr[data-id="${model}"]`).waitFor();
    assert.match(await page.textContent(`#models tr[data-id="${model}"]`), /llama/);
    await assert.doesNotReject(stateOf(page, model).getByText('loaded').waitFor({ timeout: 20000 }));
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    // the key given twice: still one feed, each log line once
    await page.click('#keyform button');
    await page.locator(`#models tr[data-id="${model}"]`).waitFor();
    await page.click('a[href="#logs"]');
    await page.waitForFunction(() => document.getElementById('logs').textContent.includes('goinfer ready'));
    await page.waitForTimeout(500);
    const logs = await page.textContent('#logs');
    assert.equal(logs.split('goinfer ready').length - 1, 1, 'a log line shown twice');
    await page.fill('#log-filter', 'listening on');
    const filtered = (await page.textContent('#logs')).trim().split('\n');
    assert.ok(filtered.length >= 1 && filtered.every((l) => l.includes('listening on')), filtered.join('\n'));
    // unload: the state comes back through the feed, not by polling
    await page.click('a[href="#models"]');
    const before = requests.filter((u) => u.startsWith('/running')).length;
    await page.click('#unload-all');
    await stateOf(page, model).getByText('unloaded').waitFor({ timeout: 20000 });
    await page.waitForTimeout(2500);
    const polls = requests.filter((u) => u.startsWith('/running')).length - before;
    assert.ok(polls <= 2, `/running asked ${polls} times after one action: polling`);
    assert.equal(requests.filter((u) => u.startsWith('/api/events')).length, 2); // one per key given
  } finally {
    await browser.close();
  }
});

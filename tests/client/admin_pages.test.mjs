// Every page of Goinfer's admin app in Debian's Chromium (playwright-core): Models (enable,
// disable), Activity (the requests and the charts), Settings (an error shown at its line, a
// save with its reload), Files (an upload with its progress and sha256), Engine, Fleet. Environment:
// GOINFER_ORIGIN, GOINFER_KEY, SHOTS (a folder for one screenshot per page), UPLOAD (a .gguf).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch } from './browser.mjs';

const { GOINFER_ORIGIN: origin, GOINFER_KEY: key, SHOTS, UPLOAD } = process.env;
const shot = (page, name) => SHOTS && page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

test('the admin app, page by page', async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(origin + '/ui');
    await page.fill('#key', key);
    await page.click('#keyform button');

    // Models: disable tiny-b, then enable it again
    const row = (id) => page.locator(`#models tr[data-id="${id}"]`);
    await row('tiny-b').waitFor();
    await row('tiny-b').locator('input[type=checkbox]').uncheck();
    await page.locator('#models tr[data-id="tiny-b"].disabled').waitFor();
    const listed = await page.evaluate(async (k) => (await (await fetch('/v1/models', { headers: { Authorization: 'Bearer ' + k } })).json()).data.map((m) => m.id), key);
    assert.ok(!listed.includes('tiny-b') && listed.includes('tiny-a'), listed.join(' '));
    await shot(page, 'models');
    await row('tiny-b').locator('input[type=checkbox]').check();
    await page.waitForFunction(() => !document.querySelector('#models tr[data-id="tiny-b"]').classList.contains('disabled'));

    // Activity: the chats the test made, and one line per model in the charts
    await page.click('a[href="#activity"]');
    await page.locator('#activity tbody tr').first().waitFor();
    assert.match(await page.textContent('#activity tbody'), /tiny-a/);
    assert.ok(await page.locator('#chart-req polyline').count() >= 1);
    await shot(page, 'activity');

    // Settings: a syntax error is shown at its line, and nothing is saved
    await page.click('a[href="#settings"]');
    await page.waitForFunction(() => document.getElementById('cfg-text').value.includes('listen'));
    const good = await page.inputValue('#cfg-text');
    const lines = good.split('\n').length;
    await page.fill('#cfg-text', good + 'limits: [unclosed\n');
    await page.click('#cfg-save');
    await page.locator('#cfg-errors li').first().waitFor();
    assert.match(await page.textContent('#cfg-errors'), /goinfer\.yml:\d+/);
    assert.ok(await page.locator('#cfg-lines b').count() >= 1, 'no line marked');
    const marked = Number((await page.locator('#cfg-lines b').first().textContent()).trim());
    assert.ok(marked >= lines - 1 && marked <= lines + 1, `line ${marked} marked, the error is at ${lines}`);
    await shot(page, 'settings-error');
    // a valid change: saved, reloaded, the diff shown
    await page.fill('#cfg-text', good + '# edited in the admin app\n');
    await page.click('#cfg-save');
    await page.waitForFunction(() => document.getElementById('cfg-note').textContent.includes('saved'));
    assert.match(await page.textContent('#cfg-note'), /saved and reloaded/);
    assert.match(await page.textContent('#cfg-diff'), /\+# edited in the admin app/);
    await shot(page, 'settings-saved');

    // Files: an upload with its progress, then listed with its sha256
    if (UPLOAD) {
      await page.click('a[href="#files"]');
      await page.setInputFiles('#upload-file', UPLOAD);
      await page.click('#upload-start');
      await page.waitForFunction(() => document.getElementById('upload-note').textContent.startsWith('done'), null, { timeout: 60000 });
      assert.match(await page.textContent('#upload-note'), /sha256 [0-9a-f]{64}/);
      await page.locator('#files tbody tr', { hasText: 'uploaded.gguf' }).waitFor();
      await shot(page, 'files');
    }

    // Engine: the llama-server in use, described
    await page.click('a[href="#engine"]');
    await page.waitForFunction(() => document.querySelector('#engine-current').textContent.includes('llama-server'));
    assert.match(await page.textContent('#engine-current'), /backend\s*cpu/);
    await shot(page, 'engine');

    // Fleet: this machine has no GPU machine behind it, and says so
    await page.click('a[href="#fleet"]');
    await page.waitForFunction(() => document.getElementById('fleet-note').textContent.includes('No GPU machine'));
    await shot(page, 'fleet');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

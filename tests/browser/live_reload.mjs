// Live reload in Chromium against `cnnscope serve`: open a served note, edit it, and wait
// for the page to show the edit; break the config and wait for the error overlay; mend it
// and wait for the overlay to go.
//   node live_reload.mjs PAGE_URL NOTE_FILE CONFIG_FILE
// Prints one JSON object: {reload_ms, overlay, overlay_text, cleared, errors}.
import { chromium } from 'playwright-core';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';

const [url, note, config] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
const errors = [];
const out = { reload_ms: null, overlay: false, overlay_text: '', cleared: false, errors };
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url);
  // Let the live-reload script read the first status before the edit.
  await page.waitForTimeout(800);
  const marker = `edited-${Date.now()}`;
  const t0 = Date.now();
  appendFileSync(note, `\n\nThe word ${marker} was added while the page was open.\n`);
  await page.waitForFunction((m) => document.body && document.body.innerText.includes(m), marker, { timeout: 20000, polling: 50 });
  out.reload_ms = Date.now() - t0;

  const good = readFileSync(config, 'utf8');
  writeFileSync(config, good.replace('arch: lenet5', 'arch: lenet6'));
  await page.waitForSelector('#cnnscope-error', { timeout: 20000 });
  out.overlay = true;
  out.overlay_text = await page.locator('#cnnscope-error').innerText();
  writeFileSync(config, good);
  await page.waitForSelector('#cnnscope-error', { state: 'detached', timeout: 20000 });
  out.cleared = await page.evaluate((m) => document.body.innerText.includes(m), marker);
} catch (e) {
  errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));

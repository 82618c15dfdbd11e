// Screenshots of a built site's pages at desktop and phone widths, for reading them as a
// student would. Usage: node screenshots.mjs SITE_DIR OUT_DIR [page ...]
// (pages relative to the site, e.g. models/lenet-mnist/index.html; default: the set below).
// CLICK=selector clicks every match first (e.g. the matrix's scale switch).
// Exits non-zero if a page logs an error or a picture fails to load.
import { chromium } from 'playwright-core';
import { mkdirSync, existsSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [site, out, ...listed] = process.argv.slice(2);
if (!site || !out) {
  console.error('usage: node screenshots.mjs SITE_DIR OUT_DIR [page ...]');
  process.exit(2);
}
const pages = listed.length ? listed : (process.env.PAGES || '').split(/\s+/).filter(Boolean);
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
let failures = 0;
for (const [label, width, height] of [['desktop', 1400, 900], ['phone', 390, 844]]) {
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
  for (const page of pages) {
    const file = resolve(site, page);
    if (!existsSync(file)) {
      console.error(`${page}: not in the site`);
      failures++;
      continue;
    }
    const p = await context.newPage();
    const errors = [];
    p.on('pageerror', (e) => errors.push(String(e)));
    p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    p.on('requestfailed', (r) => errors.push(`failed request ${r.url()}`));
    await p.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    if (process.env.CLICK) for (const c of await p.locator(process.env.CLICK).all()) await c.click();
    // Lazy pictures below the fold load once scrolled to.
    await p.evaluate(async () => {
      for (let y = 0; y < document.body.scrollHeight; y += 600) { window.scrollTo(0, y); await new Promise((r) => setTimeout(r, 20)); }
      window.scrollTo(0, 0);
    });
    const broken = await p.evaluate(() => [...document.images]
      .filter((i) => i.complete && i.naturalWidth === 0 && i.getBoundingClientRect().width > 0)
      .map((i) => i.getAttribute('src')));
    for (const b of broken) errors.push(`picture did not load: ${b}`);
    const name = page.replace(/\/index\.html$/, '').replace(/\.html$/, '').replace(/[^A-Za-z0-9._-]+/g, '_') || 'home';
    await p.screenshot({ path: join(out, `${name}.${label}.png`), fullPage: true });
    if (errors.length) {
      failures++;
      console.error(`${page} (${label}): ${errors.join('; ')}`);
    }
    await p.close();
  }
  await context.close();
}
await browser.close();
console.log(`${pages.length} pages × 2 widths → ${out}${failures ? `; ${failures} with problems` : ''}`);
process.exit(failures ? 1 : 0);

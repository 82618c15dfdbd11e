// What a reader does with the keyboard and mouse on a built site, in Chromium from file://:
// search ("/" focuses the box, typing shows results, ↓ and Enter open one), click-to-zoom
// (a picture opens large, Esc closes it), the attribution matrix's compare view (two cells
// side by side, kept in the address), the language switch, and light/dark themes.
//   node interactions.mjs SITE_DIR NOTE_PAGE PICTURE_PAGE MATRIX_PAGE 'QUERY=>PAGE'
// NOTE_PAGE has a language switch, PICTURE_PAGE a picture that is not a link.
// Prints one JSON object last: {checks, problems: [...]}; exits 1 if any problem.
import { chromium } from 'playwright-core';
import { resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';

const [siteArg, notePage, picturePage, matrixPage, search] = process.argv.slice(2);
if (!siteArg || !notePage || !picturePage || !matrixPage || !search || !search.includes('=>')) {
  console.error("usage: node interactions.mjs SITE_DIR NOTE_PAGE PICTURE_PAGE MATRIX_PAGE 'QUERY=>PAGE'");
  process.exit(2);
}
const [query, want] = search.split('=>');
const root = pathToFileURL(resolve(siteArg) + sep).href;
const url = (rel) => new URL(rel, root).href;
const problems = [];
let checks = 0;
function check(ok, what) {
  checks++;
  if (!ok) problems.push(what);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
for (const scheme of ['light', 'dark']) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: scheme });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${scheme}: script error: ${e}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${scheme}: console error: ${m.text()}`); });

  // The theme follows the system.
  await page.goto(url('index.html'));
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const dark = bg.match(/\d+/g).slice(0, 3).reduce((a, b) => a + Number(b), 0) < 3 * 128;
  check(dark === (scheme === 'dark'), `${scheme}: the page background is ${bg}`);

  // Search with the keyboard only.
  await page.keyboard.press('/');
  check(await page.evaluate(() => document.activeElement?.matches('form.search input')), `${scheme}: "/" does not focus the search box`);
  await page.keyboard.type(query);
  try {
    await page.waitForSelector('.search-results a[role=option]', { timeout: 15000 });
    const hrefs = await page.$$eval('.search-results a[role=option]', (as) => as.map((a) => a.getAttribute('href')));
    const k = hrefs.indexOf(want);
    check(k >= 0, `${scheme}: search "${query}" does not list ${want}: ${hrefs.slice(0, 5).join(', ')}`);
    if (k >= 0) {
      for (let i = 0; i <= k; i++) await page.keyboard.press('ArrowDown');
      await Promise.all([page.waitForURL(url(want)), page.keyboard.press('Enter')]);
      check(page.url() === url(want), `${scheme}: Enter after ↓ led to ${page.url()}`);
    }
  } catch (e) {
    check(false, `${scheme}: search "${query}" shows no results (${e.name})`);
  }

  // Click-to-zoom on a picture, closed with Esc.
  await page.goto(url(picturePage));
  const zoomable = await page.$('main img.zoomable');
  check(zoomable !== null, `${scheme}: ${picturePage} has no picture to zoom`);
  if (zoomable) {
    await zoomable.click();
    const shown = await page.$eval('.zoom', (z) => !z.hidden && z.querySelector('img')?.naturalWidth > 0);
    check(shown, `${scheme}: clicking a picture does not show it enlarged`);
    const size = await page.$eval('.zoom img', (i) => i.getBoundingClientRect().width);
    check(size >= 500, `${scheme}: the enlarged picture is only ${size} px wide`);
    await page.keyboard.press('Escape');
    check(await page.$eval('.zoom', (z) => z.hidden), `${scheme}: Esc does not close the enlarged picture`);
  }

  // The language switch lands on the other version, which switches back.
  await page.goto(url(notePage));
  const sw = await page.$('a.lang-switch');
  check(sw !== null, `${scheme}: ${notePage} has no language switch`);
  if (sw) {
    const lang = await page.evaluate(() => document.documentElement.lang);
    const other = await sw.getAttribute('hreflang');
    await Promise.all([page.waitForNavigation(), sw.click()]);
    check(await page.evaluate(() => document.documentElement.lang) === other, `${scheme}: the switch to ${other} lands on ${page.url()}`);
    const back = await page.$(`a.lang-switch[hreflang="${lang}"]`);
    check(back !== null, `${scheme}: ${page.url()} has no switch back to ${lang}`);
    if (back) {
      await Promise.all([page.waitForNavigation(), back.click()]);
      check(page.url() === url(notePage), `${scheme}: switching back led to ${page.url()}`);
    }
  }

  // Compare two cells of the attribution matrix; the pair is kept in the address.
  await page.goto(url(matrixPage));
  const picks = await page.$$('.compare-pick');
  check(picks.length >= 2, `${scheme}: ${matrixPage} has ${picks.length} compare buttons`);
  if (picks.length >= 2) {
    await picks[0].click();
    await picks[picks.length - 1].click();
    const figs = await page.$$eval('#compare .compare-cells figure', (f) => f.map((x) => ({
      pics: [...x.querySelectorAll('img')].filter((i) => i.complete && i.naturalWidth > 0).length,
      caption: x.querySelector('figcaption')?.textContent,
    })));
    check(figs.length === 2 && figs.every((f) => f.pics >= 1 && f.caption), `${scheme}: the compare view shows ${JSON.stringify(figs)}`);
    const hash = new URL(page.url()).hash;
    check(hash.startsWith('#compare='), `${scheme}: the address does not keep the pair (${hash})`);
    await page.goto('about:blank');
    await page.goto(url(matrixPage) + hash);
    const again = await page.$$eval('#compare .compare-cells figure', (f) => f.length);
    check(again === 2, `${scheme}: opening ${hash} shows ${again} cells`);
  }
  await context.close();
}
await browser.close();
console.log(JSON.stringify({ checks, problems }));
process.exit(problems.length ? 1 : 0);

// Visits every page of a built site in Chromium, from the home page along internal links,
// and reports what a reader would hit: console errors, failed requests, pictures that did
// not load or have no alt text, internal links to missing files, links to anchors that do
// not exist, and language switches that do not land on the other language's version of the
// page (with its `lang` and a switch back). Then it types each search into the home page's
// search box and checks that the expected page is among the results.
//   node crawl.mjs SITE_DIR [BASE_URL] [--search 'QUERY=>PAGE' ...]
// Without BASE_URL the pages are opened from file://; with it (e.g. the address of
// `cnnscope serve`) over HTTP, the files still read from SITE_DIR to check links.
// Prints one JSON object last: {pages, links, switches, searches, problems: [...]}; exits 1
// if any problem.
import { chromium } from 'playwright-core';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const searches = [];
const positional = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--search') {
    const [query, want] = (args[++i] || '').split('=>');
    if (!query || !want) { console.error(`--search wants 'QUERY=>PAGE', got ${args[i]}`); process.exit(2); }
    searches.push({ query, want });
  } else positional.push(args[i]);
}
const [siteArg, base] = positional;
if (!siteArg) {
  console.error("usage: node crawl.mjs SITE_DIR [BASE_URL] [--search 'QUERY=>PAGE' ...]");
  process.exit(2);
}
const site = resolve(siteArg);
const rootUrl = base ? (base.endsWith('/') ? base : base + '/') : pathToFileURL(site + sep).href;

// Site-relative path ("models/x/index.html") of a URL inside the site, else null.
function inSite(url) {
  let u;
  try { u = new URL(url); } catch { return null; }
  if (!u.href.startsWith(rootUrl)) return null;
  let rel = decodeURIComponent(u.pathname.slice(new URL(rootUrl).pathname.length));
  if (rel === '' || rel.endsWith('/')) rel += 'index.html';
  return rel;
}
const ids = new Map();
function idsOf(rel) {
  if (!ids.has(rel)) {
    const html = readFileSync(join(site, rel), 'utf8');
    ids.set(rel, new Set([...html.matchAll(/\s(?:id|name)="([^"]+)"/g)].map((m) => m[1])));
  }
  return ids.get(rel);
}
function exists(rel) {
  const p = join(site, rel);
  return existsSync(p) && statSync(p).isFile();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const problems = [];
const seen = new Set(['index.html']);
const queue = ['index.html'];
let links = 0;
let pages = 0;
let switches = 0;
const langOf = (rel) => (readFileSync(join(site, rel), 'utf8').match(/<html lang="([^"]*)"/) || [])[1];
while (queue.length) {
  const rel = queue.shift();
  const page = await context.newPage();
  const here = [];
  page.on('pageerror', (e) => here.push(`script error: ${e}`));
  page.on('console', (m) => { if (m.type() === 'error') here.push(`console error: ${m.text()}`); });
  page.on('requestfailed', (r) => here.push(`failed request: ${r.url()} (${r.failure()?.errorText})`));
  page.on('response', (r) => { if (r.status() >= 400) here.push(`HTTP ${r.status()}: ${r.url()}`); });
  // Requests still open, named if the page does not finish loading.
  const open = new Set();
  page.on('request', (r) => open.add(r));
  page.on('requestfinished', (r) => open.delete(r));
  page.on('requestfailed', (r) => open.delete(r));
  try {
    await page.goto(new URL(rel, rootUrl).href, { waitUntil: 'load', timeout: 30000 });
  } catch (e) {
    here.push(`did not finish loading (${e.name}); open requests: ${[...open].map((r) => r.url()).join(', ')}`);
  }
  pages++;
  const found = await page.evaluate(() => ({
    links: [...document.querySelectorAll('a[href]')].map((a) => a.href),
    // Eager pictures must have loaded; lazy ones (display:none until a switch) are checked
    // on disk below.
    broken: [...document.images].filter((i) => i.loading !== 'lazy' && i.complete && i.naturalWidth === 0).map((i) => i.src),
    lazy: [...document.images].filter((i) => i.loading === 'lazy').map((i) => i.src),
    alt: [...document.images].filter((i) => !i.hasAttribute('alt')).map((i) => i.src),
    lang: document.documentElement.lang,
    switches: [...document.querySelectorAll('a.lang-switch')].map((a) => ({ href: a.href, lang: a.hreflang })),
  }));
  for (const sw of found.switches) {
    switches++;
    const target = inSite(sw.href);
    if (!target || !exists(target)) { here.push(`language switch to a missing page: ${sw.href}`); continue; }
    const lang = langOf(target);
    if (lang !== sw.lang) here.push(`language switch to ${sw.lang} lands on a page in ${lang}: ${sw.href}`);
    // The other version must switch back to this page.
    const html = readFileSync(join(site, target), 'utf8');
    const back = [...html.matchAll(/<a class="lang-switch"[^>]*hreflang="([^"]+)"[^>]*href="([^"]+)"/g)]
      .some((m) => m[1] === found.lang && inSite(new URL(m[2], new URL(target, rootUrl)).href) === rel);
    if (!back) here.push(`${target} has no language switch back to this page (${found.lang})`);
  }
  for (const b of found.broken) here.push(`picture did not load: ${b}`);
  for (const b of found.alt) here.push(`picture without alt text: ${b}`);
  for (const l of found.lazy) {
    const target = inSite(l);
    if (target && !exists(target)) here.push(`lazy picture missing: ${l}`);
  }
  for (const href of found.links) {
    const target = inSite(href);
    if (target === null) continue;
    links++;
    if (!exists(target)) {
      here.push(`broken link: ${href}`);
      continue;
    }
    const hash = decodeURIComponent(new URL(href).hash.slice(1));
    if (hash && target.endsWith('.html') && !idsOf(target).has(hash)) here.push(`missing anchor: ${href}`);
    if (target.endsWith('.html') && !seen.has(target)) {
      seen.add(target);
      queue.push(target);
    }
  }
  for (const p of here) problems.push(`${rel}: ${p}`);
  await page.close();
}
// Search from the home page, as a reader would: type, wait for the results.
for (const { query, want } of searches) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`script error: ${e}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console error: ${m.text()}`); });
  await page.goto(new URL('index.html', rootUrl).href, { waitUntil: 'load' });
  await page.fill('form.search input', query);
  let hrefs = [];
  try {
    await page.waitForSelector('.search-results a[role=option]', { timeout: 15000 });
    hrefs = await page.$$eval('.search-results a[role=option]', (as) => as.map((a) => a.href));
  } catch (e) {
    const message = await page.$eval('.search-results', (b) => b.textContent).catch(() => '');
    errors.push(`no results (${message.trim() || e.name})`);
  }
  if (hrefs.length && !hrefs.some((h) => inSite(h) === want)) {
    errors.push(`${want} is not among the ${hrefs.length} results: ${hrefs.slice(0, 5).map(inSite).join(', ')}`);
  }
  for (const e of errors) problems.push(`search "${query}": ${e}`);
  await page.close();
}
await browser.close();
console.log(JSON.stringify({ pages, links, switches, searches: searches.length, problems }));
process.exit(problems.length ? 1 : 0);

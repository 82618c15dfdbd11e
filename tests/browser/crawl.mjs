// Visits every page of a built site in Chromium, from the home page along internal links,
// and reports what a reader would hit: console errors, failed requests, pictures that did
// not load, internal links to missing files, and links to anchors that do not exist.
//   node crawl.mjs SITE_DIR [BASE_URL]
// Without BASE_URL the pages are opened from file://; with it (e.g. the address of
// `cnnscope serve`) over HTTP, the files still read from SITE_DIR to check links.
// Prints one JSON object last: {pages, links, problems: [...]}; exits 1 if any problem.
import { chromium } from 'playwright-core';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';

const [siteArg, base] = process.argv.slice(2);
if (!siteArg) {
  console.error('usage: node crawl.mjs SITE_DIR [BASE_URL]');
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
  }));
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
await browser.close();
console.log(JSON.stringify({ pages, links, problems }));
process.exit(problems.length ? 1 : 0);

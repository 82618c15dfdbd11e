// Draws digits on a built site's playground in Chromium by pointer input (playwright-core
// driving Debian's /usr/bin/chromium, or $CHROMIUM) and prints what the page predicts.
//   node playground.mjs PAGE_URL [SCREENSHOT_DIR]
// Prints one JSON object: {results: [{digit, prediction}], errors: [...]}.
import { chromium } from 'playwright-core';

const [url, shots] = process.argv.slice(2);
// Strokes in canvas fractions (0..1), one array of points per stroke.
const DIGITS = {
  '0': [Array.from({ length: 41 }, (_, i) => {
    const a = (i / 40) * 2 * Math.PI;
    return [0.5 + 0.2 * Math.sin(a), 0.5 - 0.3 * Math.cos(a)];
  })],
  '1': [[[0.52, 0.15], [0.5, 0.5], [0.48, 0.85]]],
  '7': [[[0.25, 0.2], [0.72, 0.2], [0.6, 0.45], [0.45, 0.85]]],
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
const errors = [];
const results = [];
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url);
  const pad = await page.locator('#pad').boundingBox();
  for (const [digit, strokes] of Object.entries(DIGITS)) {
    await page.click('#clear');
    for (const stroke of strokes) {
      const at = ([x, y]) => [pad.x + x * pad.width, pad.y + y * pad.height];
      const [x0, y0] = at(stroke[0]);
      await page.mouse.move(x0, y0);
      await page.mouse.down();
      for (let i = 1; i < stroke.length; i++) {
        const [x, y] = at(stroke[i]);
        await page.mouse.move(x, y, { steps: 8 });
      }
      await page.mouse.up();
    }
    const prediction = (await page.locator('#prediction').textContent()).trim();
    results.push({ digit, prediction });
    if (shots) await page.screenshot({ path: `${shots}/playground-${digit}.png`, fullPage: true });
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ results, errors }));

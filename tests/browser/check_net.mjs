// Runs the playground's network (static/playground.js with a build's net.js) under Node on
// inputs the Rust side prepared, and reports how far it is from the Rust results.
//   node check_net.mjs PLAYGROUND_JS NET_JS CASES_JSON
// CASES_JSON: {n, inputs (base64 f32, n × 784, normalised), logits (base64 f32, n × classes),
// saliency: [{index, target, grad (base64 f32, 784)}]}. Prints one JSON object.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import vm from 'node:vm';

const [pgPath, netPath, casesPath] = process.argv.slice(2);
vm.runInThisContext(readFileSync(netPath, 'utf8'), { filename: netPath });
const require = createRequire(import.meta.url);
const { Net, decode, preprocess } = require(pgPath);
const spec = globalThis.CNNSCOPE_PLAYGROUND;
const net = new Net(spec);
const cases = JSON.parse(readFileSync(casesPath, 'utf8'));
const inputs = decode(cases.inputs), logits = decode(cases.logits);
const size = 28 * 28, classes = spec.classes.length;
let maxDiff = 0, mismatches = 0;
const argmax = (v) => v.reduce((b, x, i) => (x > v[b] ? i : b), 0);
for (let i = 0; i < cases.n; i++) {
  const acts = net.forward(inputs.subarray(i * size, (i + 1) * size));
  const js = acts[acts.length - 1].data, rust = logits.subarray(i * classes, (i + 1) * classes);
  for (let c = 0; c < classes; c++) maxDiff = Math.max(maxDiff, Math.abs(js[c] - rust[c]));
  if (argmax(js) !== argmax(rust)) mismatches++;
}
let saliencyDiff = 0;
for (const s of cases.saliency) {
  const g = net.gradient(inputs.subarray(s.index * size, (s.index + 1) * size), s.target);
  const want = decode(s.grad);
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  for (let p = 0; p < size; p++) saliencyDiff = Math.max(saliencyDiff, Math.abs(g[p] - want[p]) / scale);
}
// MNIST's preparation of a drawing: an off-centre bar on a 280 × 280 pad.
const pad = new Float32Array(280 * 280);
for (let y = 20; y < 120; y++) for (let x = 30; x < 80; x++) pad[y * 280 + x] = 1;
const img = preprocess(pad, 280, 280, 28);
let x0 = 28, x1 = -1, y0 = 28, y1 = -1, m = 0, cx = 0, cy = 0;
for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) {
  const v = img[y * 28 + x];
  if (v > 0.05) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  m += v; cx += v * (x + 0.5); cy += v * (y + 0.5);
}
const empty = preprocess(new Float32Array(280 * 280), 280, 280, 28);
console.log(JSON.stringify({
  n: cases.n, maxDiff, mismatches, saliencyDiff,
  box: [x1 - x0 + 1, y1 - y0 + 1], centre: [cx / m, cy / m], empty: empty === null,
}));

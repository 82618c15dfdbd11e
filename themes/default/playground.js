// The draw-a-digit playground: a network exported by the build (net.js next to the page,
// a chain of convolutions, ReLUs, max-pools and linear layers with its weights) run forward
// and backward in the browser, with no framework and no network. The compute part
// (CnnscopeNet) also runs under Node, where the tests check it against the Rust forward
// pass and saliency.
(function (root) {
  'use strict';

  // Float32 weights from base64 (little-endian, as the build writes them).
  function decode(b64) {
    var bin = typeof atob === 'function' ? atob(b64) : Buffer.from(b64, 'base64').toString('binary');
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }

  function Net(spec) {
    var w = decode(spec.weights);
    this.spec = spec;
    this.steps = spec.steps.map(function (s) {
      var t = {};
      for (var k in s) t[k] = s[k];
      if (s.weight) t.w = w.subarray(s.weight[0], s.weight[0] + s.weight[1]);
      if (s.bias) t.b = w.subarray(s.bias[0], s.bias[0] + s.bias[1]);
      return t;
    });
  }

  // out[o, y, x] = b[o] + Σ w[o, c, ky, kx] · in[c, y·s + ky − p, x·s + kx − p]
  function conv(x, c, h, wd, st) {
    var o = st.out, k = st.kernel, p = st.pad, s = st.stride;
    var oh = Math.floor((h + 2 * p - k) / s) + 1, ow = Math.floor((wd + 2 * p - k) / s) + 1;
    var y = new Float32Array(o * oh * ow);
    for (var oc = 0; oc < o; oc++) {
      for (var i = 0; i < oh; i++) {
        for (var j = 0; j < ow; j++) {
          var acc = st.b ? st.b[oc] : 0;
          for (var ic = 0; ic < c; ic++) {
            for (var ky = 0; ky < k; ky++) {
              var yy = i * s + ky - p;
              if (yy < 0 || yy >= h) continue;
              for (var kx = 0; kx < k; kx++) {
                var xx = j * s + kx - p;
                if (xx < 0 || xx >= wd) continue;
                acc += st.w[((oc * c + ic) * k + ky) * k + kx] * x[(ic * h + yy) * wd + xx];
              }
            }
          }
          y[(oc * oh + i) * ow + j] = acc;
        }
      }
    }
    return { data: y, shape: [o, oh, ow] };
  }

  function convBack(g, st, inShape) {
    var c = inShape[0], h = inShape[1], wd = inShape[2];
    var o = st.out, k = st.kernel, p = st.pad, s = st.stride;
    var oh = Math.floor((h + 2 * p - k) / s) + 1, ow = Math.floor((wd + 2 * p - k) / s) + 1;
    var gx = new Float32Array(c * h * wd);
    for (var oc = 0; oc < o; oc++) {
      for (var i = 0; i < oh; i++) {
        for (var j = 0; j < ow; j++) {
          var go = g[(oc * oh + i) * ow + j];
          if (go === 0) continue;
          for (var ic = 0; ic < c; ic++) {
            for (var ky = 0; ky < k; ky++) {
              var yy = i * s + ky - p;
              if (yy < 0 || yy >= h) continue;
              for (var kx = 0; kx < k; kx++) {
                var xx = j * s + kx - p;
                if (xx < 0 || xx >= wd) continue;
                gx[(ic * h + yy) * wd + xx] += st.w[((oc * c + ic) * k + ky) * k + kx] * go;
              }
            }
          }
        }
      }
    }
    return gx;
  }

  // Max-pooling with window `kernel` every `stride`; `arg` keeps where each maximum was.
  function pool(x, c, h, wd, st) {
    var k = st.kernel, s = st.stride;
    var oh = Math.floor((h - k) / s) + 1, ow = Math.floor((wd - k) / s) + 1;
    var y = new Float32Array(c * oh * ow), arg = new Int32Array(c * oh * ow);
    for (var ch = 0; ch < c; ch++) {
      for (var i = 0; i < oh; i++) {
        for (var j = 0; j < ow; j++) {
          var best = -Infinity, at = 0;
          for (var ky = 0; ky < k; ky++) {
            for (var kx = 0; kx < k; kx++) {
              var idx = (ch * h + i * s + ky) * wd + j * s + kx;
              if (x[idx] > best) { best = x[idx]; at = idx; }
            }
          }
          y[(ch * oh + i) * ow + j] = best;
          arg[(ch * oh + i) * ow + j] = at;
        }
      }
    }
    return { data: y, shape: [c, oh, ow], arg: arg };
  }

  // y = W x + b, W being `out × in` (PyTorch's layout).
  function linear(x, st) {
    var n = st.out, m = x.length, y = new Float32Array(n);
    for (var o = 0; o < n; o++) {
      var acc = st.b ? st.b[o] : 0;
      for (var i = 0; i < m; i++) acc += st.w[o * m + i] * x[i];
      y[o] = acc;
    }
    return y;
  }

  // Every step's output, in order: [{layer, shape, data}]; the last is the logits.
  Net.prototype.forward = function (x) {
    var shape = this.spec.input.slice(), cur = x, out = [];
    for (var n = 0; n < this.steps.length; n++) {
      var st = this.steps[n], r;
      if (st.op === 'conv') {
        r = conv(cur, shape[0], shape[1], shape[2], st);
      } else if (st.op === 'relu') {
        var y = new Float32Array(cur.length);
        for (var i = 0; i < cur.length; i++) y[i] = cur[i] > 0 ? cur[i] : 0;
        r = { data: y, shape: shape };
      } else if (st.op === 'maxpool') {
        r = pool(cur, shape[0], shape[1], shape[2], st);
      } else if (st.op === 'linear') {
        r = { data: linear(cur, st), shape: [st.out] };
      } else {
        throw new Error('unknown step ' + st.op);
      }
      r.layer = st.layer;
      r.input = shape;
      out.push(r);
      cur = r.data;
      shape = r.shape;
    }
    return out;
  };

  // ∂ logits[cls] / ∂ input, by the backward pass through the steps of `forward`.
  Net.prototype.gradient = function (x, cls, acts) {
    acts = acts || this.forward(x);
    var g = new Float32Array(acts[acts.length - 1].data.length);
    g[cls] = 1;
    for (var n = this.steps.length - 1; n >= 0; n--) {
      var st = this.steps[n], a = acts[n];
      if (st.op === 'linear') {
        var m = a.input.reduce(function (p, q) { return p * q; }, 1), gi = new Float32Array(m);
        for (var o = 0; o < st.out; o++) {
          if (g[o] === 0) continue;
          for (var i = 0; i < m; i++) gi[i] += st.w[o * m + i] * g[o];
        }
        g = gi;
      } else if (st.op === 'relu') {
        var gr = new Float32Array(g.length);
        for (var j = 0; j < g.length; j++) gr[j] = a.data[j] > 0 ? g[j] : 0;
        g = gr;
      } else if (st.op === 'maxpool') {
        var gp = new Float32Array(a.input[0] * a.input[1] * a.input[2]);
        for (var q = 0; q < g.length; q++) gp[a.arg[q]] += g[q];
        g = gp;
      } else if (st.op === 'conv') {
        g = convBack(g, st, a.input);
      }
    }
    return g;
  };

  function softmax(z) {
    var m = -Infinity, s = 0, p = new Float64Array(z.length);
    for (var i = 0; i < z.length; i++) m = Math.max(m, z[i]);
    for (var j = 0; j < z.length; j++) { p[j] = Math.exp(z[j] - m); s += p[j]; }
    for (var k = 0; k < z.length; k++) p[k] /= s;
    return p;
  }

  // MNIST's preparation of a drawing (`grey`, w × h on 0..1, ink bright): the ink's bounding
  // box scaled to fit 20 × 20 (aspect kept, by area averaging), placed in `size` × `size`
  // so that its centre of mass is at the centre. Returns the 0..1 image, or null for no ink.
  function preprocess(grey, w, h, size) {
    size = size || 28;
    var x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (var y = 0; y < h; y++) {
      for (var x = 0; x < w; x++) {
        if (grey[y * w + x] > 0.05) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
    if (x1 < 0) return null;
    var bw = x1 - x0 + 1, bh = y1 - y0 + 1, box = Math.round(size * 20 / 28);
    var sc = box / Math.max(bw, bh);
    var nw = Math.max(1, Math.round(bw * sc)), nh = Math.max(1, Math.round(bh * sc));
    // Area averaging: each small pixel is the mean of the source area it covers.
    var small = new Float64Array(nw * nh);
    for (var i = 0; i < nh; i++) {
      var sy0 = y0 + i * bh / nh, sy1 = y0 + (i + 1) * bh / nh;
      for (var j = 0; j < nw; j++) {
        var sx0 = x0 + j * bw / nw, sx1 = x0 + (j + 1) * bw / nw, acc = 0, area = 0;
        for (var yy = Math.floor(sy0); yy < Math.ceil(sy1); yy++) {
          var fy = Math.min(sy1, yy + 1) - Math.max(sy0, yy);
          for (var xx = Math.floor(sx0); xx < Math.ceil(sx1); xx++) {
            var f = fy * (Math.min(sx1, xx + 1) - Math.max(sx0, xx));
            acc += f * grey[yy * w + xx];
            area += f;
          }
        }
        small[i * nw + j] = area > 0 ? acc / area : 0;
      }
    }
    var mass = 0, cx = 0, cy = 0;
    for (var a = 0; a < nh; a++) {
      for (var b = 0; b < nw; b++) {
        var v = small[a * nw + b];
        mass += v; cx += v * (b + 0.5); cy += v * (a + 0.5);
      }
    }
    cx /= mass; cy /= mass;
    var clamp = function (v, lo, hi) { return Math.max(lo, Math.min(hi, v)); };
    var ox = clamp(Math.round(size / 2 - cx), 0, size - nw), oy = clamp(Math.round(size / 2 - cy), 0, size - nh);
    var out = new Float32Array(size * size);
    for (var r = 0; r < nh; r++) {
      for (var s = 0; s < nw; s++) out[(oy + r) * size + ox + s] = small[r * nw + s];
    }
    return out;
  }

  var api = { Net: Net, decode: decode, softmax: softmax, preprocess: preprocess };
  root.CnnscopeNet = api;
  if (typeof module !== 'undefined' && module.exports) module.exports = api;

  // ---- The page ---------------------------------------------------------------------------
  if (typeof document === 'undefined') return;

  // Viridis at 0..1 (a few stops, linear between them), for maps on 0..max.
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function viridis(t) {
    t = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
    var i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
  }

  // Draws an h × w map into a canvas, values coloured by `colour(v)`.
  function paint(canvas, data, h, w, colour) {
    canvas.width = w; canvas.height = h;
    var ctx = canvas.getContext('2d'), img = ctx.createImageData(w, h);
    for (var i = 0; i < h * w; i++) {
      var c = colour(data[i]);
      img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  function start() {
    var el = document.getElementById('playground');
    var spec = root.CNNSCOPE_PLAYGROUND;
    if (!el || !spec) return;
    var net = new Net(spec), classes = spec.classes, size = spec.input[1];
    var pad = document.getElementById('pad'), ctx = pad.getContext('2d');
    var prediction = document.getElementById('prediction');
    var bars = document.getElementById('bars'), layersEl = document.getElementById('layers');
    var seen = document.getElementById('seen'), sal = document.getElementById('saliency');
    var drawing = false, last = null;

    function clear() {
      ctx.fillStyle = '#000';
      ctx.fillRect(0, 0, pad.width, pad.height);
      prediction.textContent = 'Draw a digit';
      bars.innerHTML = '';
      layersEl.innerHTML = '';
      paint(seen, new Float32Array(size * size), size, size, function () { return [0, 0, 0]; });
      paint(sal, new Float32Array(size * size), size, size, function () { return [68, 1, 84]; });
    }

    function run() {
      var px = ctx.getImageData(0, 0, pad.width, pad.height).data;
      var grey = new Float32Array(pad.width * pad.height);
      for (var i = 0; i < grey.length; i++) grey[i] = px[4 * i] / 255;
      var img = preprocess(grey, pad.width, pad.height, size);
      if (!img) { clear(); return; }
      paint(seen, img, size, size, function (v) { var g = 255 * v; return [g, g, g]; });
      var x = new Float32Array(img.length);
      for (var j = 0; j < img.length; j++) x[j] = (img[j] - spec.mean[0]) / spec.std[0];
      var acts = net.forward(x), logits = acts[acts.length - 1].data, p = softmax(logits);
      var best = 0;
      for (var k = 1; k < p.length; k++) if (p[k] > p[best]) best = k;
      prediction.textContent = classes[best] + ' (' + (100 * p[best]).toFixed(1) + '%)';
      bars.innerHTML = '';
      for (var c = 0; c < p.length; c++) {
        var row = document.createElement('div');
        row.className = 'bar-row' + (c === best ? ' best' : '');
        row.innerHTML = '<span class="bar-label"></span><span class="bar"><span></span></span><span class="bar-value"></span>';
        row.children[0].textContent = classes[c];
        row.children[1].firstChild.style.width = (100 * p[c]).toFixed(1) + '%';
        row.children[2].textContent = (100 * p[c]).toFixed(1) + '%';
        bars.appendChild(row);
      }
      // Saliency: |∂ logit / ∂ pixel| of the predicted class, on 0..its maximum.
      var g = net.gradient(x, best, acts), mx = 0;
      for (var q = 0; q < g.length; q++) mx = Math.max(mx, Math.abs(g[q]));
      paint(sal, g, size, size, function (v) { return viridis(mx > 0 ? Math.abs(v) / mx : 0); });
      // Every layer's output: maps for conv layers, one strip for vectors.
      layersEl.innerHTML = '';
      acts.forEach(function (a) {
        var box = document.createElement('div');
        box.className = 'pg-layer';
        var title = document.createElement('div');
        title.className = 'pg-title';
        title.textContent = a.layer + ' ' + a.shape.join('×');
        box.appendChild(title);
        var lo = Infinity, hi = -Infinity;
        for (var t = 0; t < a.data.length; t++) { lo = Math.min(lo, a.data[t]); hi = Math.max(hi, a.data[t]); }
        var signed = lo < 0, abs = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
        var colour = signed
          ? function (v) { var f = Math.min(1, Math.abs(v) / abs); return v < 0 ? [255 * (1 - f), 255 * (1 - f), 255] : [255, 255 * (1 - f), 255 * (1 - f)]; }
          : function (v) { return viridis(v / abs); };
        if (a.shape.length === 3) {
          var maps = document.createElement('div');
          maps.className = 'pg-maps';
          var n = a.shape[1] * a.shape[2];
          for (var m = 0; m < a.shape[0]; m++) {
            var cv = document.createElement('canvas');
            paint(cv, a.data.subarray(m * n, (m + 1) * n), a.shape[1], a.shape[2], colour);
            cv.title = a.layer + ' map ' + m;
            maps.appendChild(cv);
          }
          box.appendChild(maps);
        } else {
          var strip = document.createElement('canvas');
          strip.className = 'pg-strip';
          paint(strip, a.data, 1, a.data.length, colour);
          box.appendChild(strip);
        }
        layersEl.appendChild(box);
      });
    }

    function at(e) {
      var r = pad.getBoundingClientRect();
      return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
    }
    pad.addEventListener('pointerdown', function (e) {
      drawing = true;
      last = at(e);
      if (pad.setPointerCapture) pad.setPointerCapture(e.pointerId);
      ctx.beginPath();
      ctx.arc(last[0], last[1], spec.brush / 2, 0, 2 * Math.PI);
      ctx.fillStyle = '#fff';
      ctx.fill();
      e.preventDefault();
    });
    pad.addEventListener('pointermove', function (e) {
      if (!drawing) return;
      var p = at(e);
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = spec.brush;
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      ctx.beginPath();
      ctx.moveTo(last[0], last[1]);
      ctx.lineTo(p[0], p[1]);
      ctx.stroke();
      last = p;
      e.preventDefault();
    });
    function end() {
      if (!drawing) return;
      drawing = false;
      run();
    }
    pad.addEventListener('pointerup', end);
    pad.addEventListener('pointercancel', end);
    pad.addEventListener('pointerleave', end);
    document.getElementById('clear').addEventListener('click', clear);
    clear();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})(typeof window !== 'undefined' ? window : globalThis);

// Site search over search-index.js (an elasticlunr index written at build time). The index
// is a script, loaded the first time the box is used, so search works from file:// too.
(function () {
  'use strict';
  var form = document.querySelector('form.search');
  if (!form) return;
  form.hidden = false;
  var input = form.querySelector('input');
  var box = form.querySelector('.search-results');
  var root = form.getAttribute('data-root');
  var waiting = null;

  function load(then) {
    if (window.cnnscopeSearch) return then();
    if (waiting) { waiting.push(then); return; }
    waiting = [then];
    show([], form.getAttribute('data-loading'));
    var s = document.createElement('script');
    s.src = root + 'search-index.js';
    s.onload = function () { var w = waiting; waiting = null; w.forEach(function (f) { f(); }); };
    s.onerror = function () { waiting = null; show([], 'search-index.js could not be loaded'); };
    document.head.appendChild(s);
  }

  // Split as the index did (pages/search.rs `tokens`): runs of letters and digits,
  // lowercased, and each Chinese character alone.
  var HAN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/;
  function tokens(text) {
    var out = [];
    (text.match(/[\p{Alphabetic}\p{N}_]+/gu) || []).forEach(function (run) {
      var word = '';
      for (var ch of run) {
        if (HAN.test(ch)) {
          if (word) { out.push(word.toLowerCase()); word = ''; }
          out.push(ch);
        } else word += ch;
      }
      if (word) out.push(word.toLowerCase());
    });
    return out;
  }

  function node(tree, token) {
    var n = tree;
    for (var ch of token) { n = n[ch]; if (!n) return null; }
    return n;
  }

  // Every term under a trie node, with its postings: the word typed so far matches the
  // words it begins, each scored less the more it adds.
  function expand(n, depth, out) {
    if (n.docs && Object.keys(n.docs).length) out.push({ depth: depth, docs: n.docs, df: n.df });
    for (var k in n) if (k !== 'docs' && k !== 'df') expand(n[k], depth + 1, out);
    return out;
  }

  var BOOST = { title: 4, body: 1 };
  function search(query) {
    var data = window.cnnscopeSearch;
    var n = data.docs.length;
    // Words the index leaves out ("the", "of") are left out of the query too.
    var stop = data.stopSet || (data.stopSet = new Set(data.stop));
    var words = tokens(query).filter(function (w) { return !stop.has(w); });
    if (!words.length) return [];
    var total = null;
    words.forEach(function (w, i) {
      var scores = {};
      // Prefix matching for words of two letters or more; single letters and Chinese
      // characters must match whole.
      var prefix = w.length >= 2 && !HAN.test(w);
      ['title', 'body'].forEach(function (field) {
        var start = node(data.index.index[field].root, w);
        if (!start) return;
        var terms = prefix ? expand(start, 0, []) : (start.docs ? [{ depth: 0, docs: start.docs, df: start.df }] : []);
        var lengths = data.index.documentStore.docInfo;
        terms.forEach(function (t) {
          var idf = 1 + Math.log(n / (t.df + 1));
          var penalty = w.length / (w.length + t.depth);
          for (var ref in t.docs) {
            // Long pages mention everything: a word counts more in a short field.
            var norm = 1 / Math.sqrt(Math.max(1, (lengths[ref] || {})[field] || 1));
            scores[ref] = (scores[ref] || 0) + t.docs[ref].tf * idf * BOOST[field] * penalty * norm;
          }
        });
      });
      // Every word must match somewhere in the page.
      if (total === null) total = scores;
      else {
        var both = {};
        for (var ref in total) if (ref in scores) both[ref] = total[ref] + scores[ref];
        total = both;
      }
    });
    // Pages nearer the top of the site (a layer before its units) come first among equals.
    var depth = function (ref) { return data.docs[ref].href.split('/').length; };
    return Object.keys(total || {})
      .map(function (ref) { return { ref: ref, score: total[ref] / Math.sqrt(depth(ref)) }; })
      .sort(function (a, b) { return b.score - a.score || a.ref - b.ref; });
  }

  var active = -1;
  function show(results, message) {
    box.innerHTML = '';
    active = -1;
    if (message) {
      var p = document.createElement('p');
      p.className = 'search-message';
      p.textContent = message;
      box.appendChild(p);
    }
    var docs = window.cnnscopeSearch ? window.cnnscopeSearch.docs : [];
    var lang = document.documentElement.lang;
    results.slice(0, 30).forEach(function (r, i) {
      var d = docs[r.ref];
      var a = document.createElement('a');
      a.href = root + d.href;
      a.id = 'search-result-' + i;
      a.setAttribute('role', 'option');
      var title = document.createElement('strong');
      title.textContent = d.title;
      a.appendChild(title);
      if (d.lang && d.lang !== lang) {
        var l = document.createElement('span');
        l.className = 'search-lang';
        l.textContent = d.lang;
        a.appendChild(l);
      }
      if (d.crumbs) {
        var c = document.createElement('small');
        c.textContent = d.crumbs;
        a.appendChild(c);
      }
      if (d.teaser) {
        var t = document.createElement('span');
        t.className = 'search-teaser';
        t.textContent = d.teaser;
        a.appendChild(t);
      }
      box.appendChild(a);
    });
    box.hidden = !message && !results.length;
  }

  function run() {
    var q = input.value.trim();
    if (!q) { show([]); return; }
    load(function () {
      var results = search(q);
      var count = form.getAttribute('data-count').replace('{n}', results.length);
      show(results, results.length ? count : form.getAttribute('data-none').replace('{q}', q));
    });
  }

  var timer = null;
  input.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(run, 60); });
  input.addEventListener('focus', function () { load(function () {}); if (input.value.trim()) run(); });
  function move(by) {
    var links = box.querySelectorAll('a');
    if (!links.length) return;
    active = (active + by + links.length) % links.length;
    links.forEach(function (a, i) { a.classList.toggle('active', i === active); });
    input.setAttribute('aria-activedescendant', links[active].id);
    links[active].scrollIntoView({ block: 'nearest' });
  }
  input.addEventListener('keydown', function (e) {
    if (e.key === 'ArrowDown') { e.preventDefault(); move(1); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); move(-1); }
    else if (e.key === 'Enter') {
      var links = box.querySelectorAll('a');
      var a = links[active >= 0 ? active : 0];
      if (a) location.href = a.href;
    } else if (e.key === 'Escape') { input.value = ''; show([]); input.blur(); }
  });
  document.addEventListener('keydown', function (e) {
    var t = e.target;
    var typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (e.key === '/' && !typing) { e.preventDefault(); input.focus(); }
  });
  document.addEventListener('click', function (e) { if (!form.contains(e.target)) box.hidden = true; });
})();

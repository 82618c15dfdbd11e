// The theme's page behaviour: pixel-exact enlargement, click-to-zoom. Pages work without it.
(function () {
  'use strict';
  // Square pixels only where a picture is enlarged (small inputs); shrunk pictures are
  // smoothed, so that no pixel is dropped (hidden ones, 0 wide, are left as they are).
  function fit(img) {
    if (img.clientWidth > 0 && img.naturalWidth > img.clientWidth) img.classList.remove('pixelated');
  }
  document.querySelectorAll('img.pixelated').forEach(function (img) {
    if (img.complete) fit(img);
    else img.addEventListener('load', function () { fit(img); });
  });

  // Click-to-zoom: a picture that is not a link opens at the window's size, pixels kept
  // square where the picture is small. Esc, a click or the button close it.
  var zoom = document.querySelector('.zoom');
  if (!zoom) return;
  // The enlarged picture is made when first needed: an <img> without a source would count
  // as a picture that did not load.
  var big = document.createElement('img');
  big.alt = '';
  var caption = zoom.querySelector('.zoom-caption');
  var closeButton = zoom.querySelector('.zoom-close');
  var opener = null;
  function zoomable(img) {
    return !img.closest('a, summary, button, .zoom, .no-zoom, .unit-cell, .colorbar');
  }
  function open(img) {
    opener = img;
    if (!big.parentNode) zoom.insertBefore(big, caption);
    big.src = img.currentSrc || img.src;
    big.alt = img.alt;
    big.classList.toggle('pixelated', img.naturalWidth > 0 && img.naturalWidth < 600);
    var fig = img.closest('figure');
    var cap = fig && fig.querySelector('figcaption');
    caption.textContent = cap ? cap.textContent : img.alt;
    zoom.hidden = false;
    document.body.classList.add('zoomed');
    closeButton.focus();
  }
  function close() {
    if (zoom.hidden) return;
    zoom.hidden = true;
    big.remove();
    document.body.classList.remove('zoomed');
    if (opener) opener.focus();
  }
  document.querySelectorAll('main img').forEach(function (img) {
    if (!zoomable(img)) return;
    img.classList.add('zoomable');
    img.tabIndex = 0;
    img.setAttribute('role', 'button');
    img.setAttribute('aria-label', (img.alt || '') + ' (' + zoom.getAttribute('aria-label') + ')');
    img.addEventListener('click', function () { open(img); });
    img.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(img); }
    });
  });
  zoom.addEventListener('click', close);
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') close();
  });
})();

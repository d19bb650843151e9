// feedmq console: copy buttons. Every page works without this script;
// it only shows the buttons it can make work.
(function () {
  'use strict';
  if (!navigator.clipboard || !window.isSecureContext) {
    return; // the Clipboard API needs https or localhost: leave the text to select
  }
  document.querySelectorAll('button.copy[data-copy]').forEach(function (b) {
    var target = document.getElementById(b.getAttribute('data-copy'));
    if (!target) return;
    b.hidden = false;
    b.addEventListener('click', function () {
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        b.textContent = 'Copied';
        b.classList.add('done');
        setTimeout(function () { b.textContent = 'Copy'; b.classList.remove('done'); }, 2000);
      }, function () {
        b.textContent = 'Copy failed';
      });
    });
  });
})();

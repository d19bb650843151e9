// feedmq console: copy buttons, and "Add Channel" / "Remove" without a
// round trip. Every page works without this script: the buttons submit
// the form, and the server answers with the row added or removed.
(function () {
  'use strict';

  // Copy buttons: the Clipboard API needs https or localhost, so they
  // stay hidden elsewhere and the text is left to select.
  if (navigator.clipboard && window.isSecureContext) {
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
  }

  // Authorize Channels.
  var fieldset = document.querySelector('fieldset.grants');
  var table = document.getElementById('grants');
  var select = document.getElementById('add_channel');
  if (!fieldset || !table || !select) return;
  var body = table.tBodies[0];
  var max = parseInt(fieldset.getAttribute('data-max'), 10) || 0;
  var count = document.getElementById('grant-count');

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]);
    });
    (kids || []).forEach(function (c) { e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function rows() { return body.querySelectorAll('tr[data-grant]').length; }
  function refresh() {
    var n = rows();
    if (count) count.textContent = String(n);
    table.hidden = n === 0;
    var none = document.getElementById('no-grants');
    if (none) none.hidden = n > 0;
  }
  function check(name, id, label, chName) {
    return el('td', {}, [el('label', { class: 'check' }, [
      el('input', { type: 'checkbox', name: name, value: id, checked: '' }), ' ' + label,
      el('span', { class: 'sr', text: ' to ' + chName })])]);
  }

  fieldset.addEventListener('click', function (ev) {
    var b = ev.target.closest('button[name=op]');
    if (!b) return;
    if (b.value === 'add') {
      var opt = select.options[select.selectedIndex];
      // Nothing chosen or the limit reached: the server says why.
      if (!opt || !opt.value || (max && rows() >= max)) return;
      ev.preventDefault();
      var id = opt.value, label = opt.textContent, chName = label.replace(/ \(\d+\)$/, '');
      var name = el('td', {}, [el('input', { type: 'hidden', name: 'channel', value: id }), chName + ' ',
        el('span', { class: 'muted', text: '(' + id + ')' })]);
      var remove = el('button', { type: 'submit', name: 'op', value: 'remove:' + id, formnovalidate: '', 'aria-label': 'Remove ' + chName, text: 'Remove' });
      remove.setAttribute('data-label', label);
      body.appendChild(el('tr', { 'data-grant': id }, [name, check('publish', id, 'Allow Publish', chName),
        check('subscribe', id, 'Allow Subscribe', chName), el('td', {}, [remove])]));
      opt.remove();
      select.value = '';
      refresh();
      body.querySelector('tr[data-grant="' + id + '"] input[type=checkbox]').focus();
    } else if (b.value.indexOf('remove:') === 0) {
      ev.preventDefault();
      var row = b.closest('tr[data-grant]');
      var rid = row.getAttribute('data-grant');
      var text = b.getAttribute('data-label') || (b.getAttribute('aria-label') || '').replace(/^Remove /, '') + ' (' + rid + ')';
      select.appendChild(el('option', { value: rid, text: text }));
      row.remove();
      refresh();
      select.focus();
    }
  });
})();

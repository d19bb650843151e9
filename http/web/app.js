// feedmq dashboard: channel list and live channel pages. No dependencies:
// history comes from the REST API, new entries from the channel's event
// stream (Server-Sent Events), charts are drawn as SVG.
(function () {
  'use strict';

  var KEYS = 'feedmq.keys';        // read keys the user gave, in localStorage
  var HISTORY = 500;               // entries loaded and kept per channel page
  var SVGNS = 'http://www.w3.org/2000/svg';

  // window.feedmq exposes the page state (for tests and the curious).
  var state = window.feedmq = {
    view: '', channel: null, key: '', entries: [], lastEntryId: 0,
    live: 'off', received: 0, fields: []
  };

  // ---------- small helpers ----------
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'class') e.className = attrs[k];
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs || {}) {
      if (k === 'text') e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]);
    }
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function loadKeys() {
    try { var v = JSON.parse(localStorage.getItem(KEYS) || '[]'); return Array.isArray(v) ? v.filter(validKey) : []; }
    catch (e) { return []; }
  }
  function saveKeys(keys) {
    try { localStorage.setItem(KEYS, JSON.stringify(keys)); } catch (e) { /* private mode */ }
  }
  function validKey(k) { return typeof k === 'string' && /^[A-Z0-9]{16}$/.test(k); }
  function addKey(k) {
    k = (k || '').trim().toUpperCase();
    if (!validKey(k)) return false;
    var keys = loadKeys();
    if (keys.indexOf(k) < 0) { keys.push(k); saveKeys(keys); }
    return true;
  }
  function forgetKey(k) { saveKeys(loadKeys().filter(function (x) { return x !== k; })); }
  function keyQuery(key, first) {
    return key ? (first ? '?' : '&') + 'api_key=' + encodeURIComponent(key) : '';
  }
  function getJSON(url) {
    return fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (body) {
        if (!r.ok) {
          var err = new Error((body && body.error && body.error.details) || ('HTTP ' + r.status));
          err.status = r.status;
          throw err;
        }
        return body;
      });
    });
  }
  function parseTime(s) { return s ? new Date(s).getTime() : NaN; }
  function pad(n) { return n < 10 ? '0' + n : '' + n; }
  function fmtDateTime(t) {
    var d = new Date(t);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function ago(t) {
    if (!isFinite(t)) return '—';
    var s = Math.round((Date.now() - t) / 1000);
    if (s < 5) return 'just now';
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }
  function num(v) {
    if (v == null || v === '') return NaN;
    var n = Number(v);
    return isFinite(n) ? n : NaN;
  }
  function fieldList(ch) {
    var out = [];
    for (var n = 1; n <= 8; n++) if (ch.fields && ch.fields['field' + n] != null) out.push({ n: n, label: ch.fields['field' + n] });
    return out;
  }
  function badge(ch) {
    return el('span', { class: 'badge ' + (ch.public ? 'public' : 'private'), text: ch.public ? 'Public' : 'Private' });
  }
  // entriesCount is how many entries a listed channel holds; last_entry_id
  // overstates it after retention or an import with gaps.
  function entriesCount(ch) { return ch.entries != null ? ch.entries : (ch.last_entry_id || 0); }
  function entriesText(ch) {
    var n = entriesCount(ch);
    return ch.last_entry_id ? n + (n === 1 ? ' entry' : ' entries') : 'no data yet';
  }
  function isoUTC(t) { return new Date(t).toISOString().replace(/\.\d+Z$/, 'Z'); }
  // localInput formats t for a datetime-local input, in local time.
  function localInput(t) {
    var d = new Date(t);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }
  // RANGES are the picker's choices; minutes 0 is the live view of the
  // newest entries.
  var RANGES = [
    { id: 'latest', label: 'Latest entries (live)', minutes: 0 },
    { id: 'hour', label: 'Last hour', minutes: 60 },
    { id: 'day', label: 'Last day', minutes: 1440 },
    { id: 'week', label: 'Last week', minutes: 10080 },
    { id: 'custom', label: 'Custom…', minutes: -1 }
  ];
  var BUCKETS = [10, 15, 20, 30, 60, 240, 720, 1440];
  var MAX_POINTS = 300;           // points per chart a range may draw
  // bucketFor is the average= bucket (minutes) that keeps a range of span
  // minutes within MAX_POINTS, or 0 when short ranges are drawn raw.
  function bucketFor(span) {
    if (span <= 180) return 0;
    for (var i = 0; i < BUCKETS.length; i++) if (span / BUCKETS[i] <= MAX_POINTS) return BUCKETS[i];
    return 1440;
  }
  function notice(text, error) { return el('div', { class: 'notice' + (error ? ' error' : ''), role: error ? 'alert' : 'status', text: text }); }

  // ---------- routing ----------
  var app = document.getElementById('app');
  var teardown = null;

  function route() {
    if (teardown) { teardown(); teardown = null; }
    var url = new URL(location.href);
    var given = url.searchParams.get('api_key');
    if (given != null) {
      // Keep the key, but not in the address bar, history or a screenshot.
      var ok = addKey(given);
      url.searchParams.delete('api_key');
      history.replaceState(null, '', url.pathname + url.search + url.hash);
      if (!ok) state.flash = 'That is not a read key: keys are 16 letters and digits.';
      state.given = given.trim().toUpperCase();
    }
    var m = /^\/channel\/([1-9][0-9]*)$/.exec(location.pathname);
    if (m) channelPage(Number(m[1]), state.given);
    else listPage();
  }

  function link(e) {
    var a = e.target.closest && e.target.closest('a[data-nav]');
    if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    history.pushState(null, '', a.getAttribute('href'));
    route();
  }
  document.addEventListener('click', link);
  window.addEventListener('popstate', route);

  // ---------- channel list ----------
  function listPage() {
    state.view = 'list';
    document.title = 'Channels · feedmq';
    clear(app);
    var input = el('input', { type: 'text', name: 'api_key', placeholder: 'Read key of a private channel', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'Read API key' });
    var form = el('form', { class: 'key', onsubmit: function (e) {
      e.preventDefault();
      if (!addKey(input.value)) { state.flash = 'That is not a read key: keys are 16 letters and digits.'; }
      else { state.given = input.value.trim().toUpperCase(); }
      listPage();
    } }, [input, el('button', { class: 'primary', type: 'submit', text: 'Add key' })]);
    app.appendChild(el('div', { class: 'toolbar' }, [el('h1', { text: 'Channels' }), form]));
    var msg = el('div');
    app.appendChild(msg);
    if (state.flash) { msg.appendChild(notice(state.flash, true)); state.flash = ''; }
    var grid = el('div', { class: 'chgrid', id: 'channels' });
    app.appendChild(grid);
    var keys = loadKeys();
    var q = keys.map(function (k, i) { return (i ? '&' : '?') + 'api_key=' + encodeURIComponent(k); }).join('');
    getJSON('/dashboard/channels.json' + q).then(function (list) {
      // Forget keys that unlock nothing (a typo, or a regenerated key).
      var used = {};
      list.forEach(function (ch) { if (ch.api_key) used[ch.api_key] = true; });
      var unused = keys.filter(function (k) { return !used[k]; });
      if (unused.length) {
        saveKeys(keys.filter(function (k) { return used[k]; }));
        if (state.given && unused.indexOf(state.given) >= 0) msg.appendChild(notice('No channel has that read key.', true));
      }
      state.given = '';
      state.channels = list;
      if (!list.length) {
        grid.appendChild(el('div', { class: 'card empty' }, [
          'No channels to show. Public channels appear here; a private channel appears when you add its read key.']));
        return;
      }
      list.forEach(function (ch) { grid.appendChild(channelCard(ch)); });
    }).catch(function (err) { msg.appendChild(notice('Could not load channels: ' + err.message, true)); });
  }

  function channelCard(ch) {
    var href = '/channel/' + ch.id;
    var chips = el('div', { class: 'chips' }, fieldList(ch).map(function (f) { return el('span', { class: 'chip', text: f.label }); }));
    var meta = el('div', { class: 'meta' }, [
      el('span', { text: 'Channel ' + ch.id }),
      el('span', { text: entriesText(ch) })
    ]);
    var card = el('a', { class: 'card chcard', href: href, 'data-nav': '', 'data-channel': ch.id }, [
      el('div', { class: 'row' }, [el('h2', { text: ch.name }), badge(ch)]),
      ch.description ? el('p', { class: 'desc', text: ch.description }) : null,
      chips, meta
    ]);
    if (ch.api_key && !ch.owner) {
      meta.appendChild(el('button', { class: 'link', type: 'button', text: 'forget key', onclick: function (e) {
        e.preventDefault(); e.stopPropagation(); forgetKey(ch.api_key); listPage();
      } }));
    }
    return card;
  }

  // ---------- channel page ----------
  function channelPage(id, given) {
    state.view = 'channel';
    state.channel = null; state.entries = []; state.lastEntryId = 0; state.received = 0; state.live = 'off';
    state.count = 0; state.range = { id: 'latest' };
    clear(app);
    app.appendChild(el('a', { class: 'crumb', href: '/', 'data-nav': '', text: '← All channels' }));
    var body = el('div', {}, [el('p', { class: 'muted', text: 'Loading channel ' + id + '…' })]);
    app.appendChild(body);
    var closed = false, es = null, retryTimer = 0, tickTimer = 0, countTimer = 0, refetching = false, charts = [], rangeSeq = 0;
    teardown = function () {
      closed = true;
      if (es) es.close();
      clearTimeout(retryTimer); clearInterval(tickTimer); clearInterval(countTimer);
      charts.forEach(function (c) { c.destroy(); });
    };

    // The key: the one just given, else a stored one that unlocks this channel.
    var keys = loadKeys();
    var q = keys.map(function (k, i) { return (i ? '&' : '?') + 'api_key=' + encodeURIComponent(k); }).join('');
    getJSON('/dashboard/channels.json' + q).then(function (list) {
      var ch = list.filter(function (c) { return c.id === id; })[0];
      if (!ch) {
        var e = new Error(given ? 'No channel ' + id + ' with that read key.' : 'Channel ' + id + ' does not exist or is private: add its read key on the channel list, or open /channel/' + id + '?api_key=KEY.');
        e.status = 404; throw e;
      }
      state.key = ch.api_key || '';
      state.given = '';
      return getJSON('/channels/' + id + '/feeds.json?results=' + HISTORY + EXTRA + keyQuery(state.key)).then(function (feed) {
        if (closed) return;
        render(ch, feed);
      });
    }).catch(function (err) {
      if (closed) return;
      clear(body).appendChild(notice(err.message, true));
    });

    var ui = {};
    function render(ch, feed) {
      state.channel = ch;
      state.fields = fieldList(ch);
      document.title = ch.name + ' · feedmq';
      clear(body);
      body.appendChild(el('div', { class: 'pagehead' }, [el('h1', { text: ch.name }), badge(ch), ui.live = el('span', { class: 'live', id: 'live', role: 'status', text: 'connecting' })]));
      if (ch.description) body.appendChild(el('p', { class: 'desc', text: ch.description }));
      state.count = entriesCount(ch);
      ui.count = el('div', { class: 'v', id: 'entry-count', text: '0' });
      ui.lastAt = el('div', { class: 'v', id: 'last-at', text: '—' });
      ui.status = el('div', { class: 'v text', id: 'last-status', text: '—' });
      ui.location = el('div', { class: 'v text', id: 'location', text: '—' });
      // The channel's own location, shown until an entry carries one.
      ui.chLoc = feed.channel ? place(feed.channel) : '';
      body.appendChild(el('div', { class: 'stats' }, [
        el('div', { class: 'card stat' }, [el('div', { class: 'k', text: 'Channel ID' }), el('div', { class: 'v', text: String(ch.id) })]),
        el('div', { class: 'card stat' }, [el('div', { class: 'k', text: 'Entries' }), ui.count]),
        el('div', { class: 'card stat' }, [el('div', { class: 'k', text: 'Last entry' }), ui.lastAt]),
        el('div', { class: 'card stat' }, [el('div', { class: 'k', text: 'Status' }), ui.status]),
        el('div', { class: 'card stat' }, [el('div', { class: 'k', text: 'Location' }), ui.location])
      ]));
      var base = '/channels/' + ch.id;
      var dl = el('div', { class: 'downloads' }, [el('span', { class: 'muted', text: 'Download:' }),
        el('a', { class: 'btn', href: base + '/feeds.csv?results=100' + keyQuery(state.key), download: 'channel-' + ch.id + '.csv', text: 'CSV, last 100' }),
        el('a', { class: 'btn', href: base + '/feeds.csv?results=8000' + keyQuery(state.key), download: 'channel-' + ch.id + '-8000.csv', text: 'CSV, last 8000' }),
        el('a', { class: 'btn', href: base + '/feeds.json?results=8000' + keyQuery(state.key), text: 'JSON, last 8000' })]);
      state.fields.forEach(function (f) {
        dl.appendChild(el('a', { class: 'btn', href: base + '/fields/' + f.n + '.csv?results=8000' + keyQuery(state.key), download: 'channel-' + ch.id + '-field' + f.n + '.csv', text: f.label + ' CSV' }));
      });
      body.appendChild(dl);
      body.appendChild(rangePicker(base));

      var grid = el('div', { class: 'grid', id: 'fields' });
      body.appendChild(grid);
      ui.fields = state.fields.map(function (f) {
        var last = el('div', { class: 'last', text: '—' });
        var when = el('div', { class: 'when' });
        var box = el('div', { class: 'chart' });
        var card = el('section', { class: 'card field s' + f.n, 'data-field': f.n, 'data-points': '0', 'data-last': '' }, [
          el('div', { class: 'head' }, [el('h2', { text: f.label }), el('span', { class: 'name', text: 'field' + f.n })]),
          last, when, box]);
        grid.appendChild(card);
        var chart = lineChart(box, f.label);
        charts.push(chart);
        return { f: f, card: card, last: last, when: when, chart: chart };
      });
      if (!state.fields.length) grid.appendChild(el('div', { class: 'card empty', text: 'This channel has no enabled fields.' }));

      ui.table = el('tbody');
      var head = el('tr', {}, [el('th', { text: 'Entry' }), el('th', { text: 'Created' })].concat(
        state.fields.map(function (f) { return el('th', { text: f.label }); }), [el('th', { text: 'Status' })]));
      body.appendChild(el('div', { class: 'card tablewrap', id: 'recent' }, [ui.tableHead = el('h2', { text: 'Recent entries' }),
        el('table', { class: 'recent' }, [el('thead', {}, [head]), ui.table])]));

      setEntries(feed.feeds || [], feed.channel && feed.channel.last_entry_id);
      connect();
      tickTimer = setInterval(function () { updateTimes(); }, 5000);
      // Retention drops old entries while the page is open: recount now
      // and then rather than only adding what arrives.
      countTimer = setInterval(recount, 30000);
    }

    function recount() {
      getJSON('/dashboard/channels.json' + keyQuery(state.key, true)).then(function (list) {
        var ch = list.filter(function (c) { return c.id === id; })[0];
        if (ch && !closed) { state.count = entriesCount(ch); showCount(); }
      }, function () { /* keep the last count */ });
    }

    function showCount() {
      ui.count.textContent = String(state.count);
      ui.count.setAttribute('data-count', String(state.count));
    }

    // rangePicker offers the time ranges and the CSV of the chosen one.
    function rangePicker(base) {
      var sel = el('select', { id: 'range', name: 'range' }, RANGES.map(function (r) { return el('option', { value: r.id, text: r.label }); }));
      var now = Date.now();
      var from = el('input', { type: 'datetime-local', id: 'range-start', name: 'start', value: localInput(now - 86400000) });
      var to = el('input', { type: 'datetime-local', id: 'range-end', name: 'end', value: localInput(now) });
      var custom = el('span', { class: 'custom', hidden: '' }, [
        el('label', { for: 'range-start', text: 'From' }), from,
        el('label', { for: 'range-end', text: 'to' }), to,
        el('button', { type: 'submit', text: 'Show' })]);
      ui.rangeNote = el('span', { class: 'muted', id: 'range-note', role: 'status' });
      ui.rangeCSV = el('a', { class: 'btn', id: 'range-csv', hidden: '', text: 'CSV of this range' });
      var form = el('form', { class: 'range', id: 'range-form', onsubmit: function (e) { e.preventDefault(); apply(); } }, [
        el('label', { for: 'range', text: 'Time range' }), sel, custom, ui.rangeCSV, ui.rangeNote]);
      sel.addEventListener('change', function () {
        custom.hidden = sel.value !== 'custom';
        if (sel.value !== 'custom') apply();
      });
      function apply() {
        var r = RANGES.filter(function (x) { return x.id === sel.value; })[0], start, end;
        if (r.minutes === 0) { showRange({ id: 'latest' }); return; }
        if (r.minutes > 0) { end = Date.now(); start = end - r.minutes * 60000; }
        else {
          start = new Date(from.value).getTime(); end = new Date(to.value).getTime();
          if (!isFinite(start) || !isFinite(end) || end <= start) {
            ui.rangeNote.textContent = 'Give a start before the end.';
            return;
          }
        }
        showRange({ id: r.id, start: start, end: end, average: bucketFor((end - start) / 60000) }, base);
      }
      return form;
    }

    // showRange draws the chosen range: the live newest entries, or the
    // entries between start and end, averaged in buckets for long ranges.
    function showRange(r, base) {
      var seq = ++rangeSeq;
      state.range = r;
      if (r.id === 'latest') {
        ui.rangeCSV.hidden = true;
        ui.rangeNote.textContent = '';
        ui.tableHead.textContent = 'Recent entries';
        refetch(true);
        return;
      }
      var q = '?start=' + encodeURIComponent(isoUTC(r.start)) + '&end=' + encodeURIComponent(isoUTC(r.end)) + keyQuery(state.key);
      ui.rangeCSV.href = base + '/feeds.csv' + q;
      ui.rangeCSV.setAttribute('download', 'channel-' + id + '-' + isoUTC(r.start).slice(0, 10) + '.csv');
      ui.rangeCSV.hidden = false;
      ui.rangeNote.textContent = 'Loading…';
      getJSON(base + '/feeds.json' + q + (r.average ? '&average=' + r.average : '')).then(function (feed) {
        if (closed || seq !== rangeSeq) return;
        var list = feed.feeds || [];
        state.entries = list;
        ui.tableHead.textContent = r.average ? 'Last ' + r.average + '-minute averages of the range' : 'Last entries of the range';
        ui.rangeNote.textContent = (r.average ? list.length + ' averages of ' + r.average + ' min' : list.length + ' entries') +
          (list.length >= 8000 ? ' (the newest 8000)' : '');
        redraw();
      }).catch(function (err) {
        if (seq === rangeSeq) ui.rangeNote.textContent = 'Could not load the range: ' + err.message;
      });
    }

    function setEntries(list, lastId) {
      state.lastEntryId = Math.max(lastId || 0, list.length ? list[list.length - 1].entry_id : 0);
      if (state.range.id !== 'latest') { showCount(); return; } // a range is drawn
      state.entries = list.slice(-HISTORY);
      redraw();
    }

    function addEntry(e) {
      state.received++;
      if (e.entry_id <= state.lastEntryId) {
        if (e.entry_id !== 1) return; // a duplicate
        state.count = 0;              // the channel was cleared: numbering restarted
        if (state.range.id === 'latest') state.entries = [];
      } else if (state.lastEntryId && e.entry_id > state.lastEntryId + 1) {
        refetch();                    // the stream missed entries
      }
      state.count++;
      state.lastEntryId = e.entry_id;
      if (state.range.id !== 'latest') { showCount(); return; } // a chosen range stays as drawn
      state.entries.push(e);
      if (state.entries.length > HISTORY) state.entries.splice(0, state.entries.length - HISTORY);
      redraw(true);
    }

    function refetch(force) {
      if (refetching && !force) return;
      refetching = true;
      if (!force) recount();
      getJSON('/channels/' + id + '/feeds.json?results=' + HISTORY + EXTRA + keyQuery(state.key)).then(function (feed) {
        refetching = false;
        if (!closed) setEntries(feed.feeds || [], feed.channel && feed.channel.last_entry_id);
      }, function () { refetching = false; });
    }

    function redraw(fresh) {
      var entries = state.entries;
      showCount();
      var lastE = entries[entries.length - 1];
      ui.lastAt.textContent = lastE ? ago(parseTime(lastE.created_at)) : '—';
      if (lastE) ui.lastAt.title = fmtDateTime(parseTime(lastE.created_at));
      ui.fields.forEach(function (u) {
        var key = 'field' + u.f.n, pts = [], lastV = null, lastT = NaN;
        for (var i = 0; i < entries.length; i++) {
          var v = entries[i][key];
          if (v == null) continue;
          lastV = v; lastT = parseTime(entries[i].created_at);
          var y = num(v), t = parseTime(entries[i].created_at);
          if (isFinite(y) && isFinite(t)) pts.push([t, y]);
        }
        var changed = u.card.getAttribute('data-last') !== (lastV == null ? '' : String(lastV));
        // A text value is data, not an error: neutral, not in the series colour.
        u.last.classList.toggle('text', lastV != null && !isFinite(num(lastV)));
        u.last.textContent = lastV == null ? '—' : lastV;
        u.last.title = lastV == null ? '' : lastV;
        u.lastT = lastT;
        u.when.textContent = lastV == null ? 'no values yet' : ago(lastT) + ' · ' + fmtDateTime(lastT);
        u.card.setAttribute('data-points', String(pts.length));
        u.card.setAttribute('data-last', lastV == null ? '' : lastV);
        u.chart.set(pts, lastV != null && !pts.length);
        if (fresh && changed) { u.last.classList.remove('flash'); void u.last.offsetWidth; u.last.classList.add('flash'); }
      });
      clear(ui.table);
      entries.slice(-10).reverse().forEach(function (e) {
        ui.table.appendChild(el('tr', {}, [el('td', { 'data-label': 'Entry', text: e.entry_id != null ? String(e.entry_id) : '—' }),
          el('td', { 'data-label': 'Created', text: fmtDateTime(parseTime(e.created_at)) })].concat(
          state.fields.map(function (f) { var v = e['field' + f.n]; v = v == null ? '' : String(v); return el('td', { class: 'v', 'data-label': f.label, text: v, title: v }); }),
          [el('td', { class: 'v status', 'data-label': 'Status', text: e.status == null ? '' : String(e.status), title: e.status == null ? '' : String(e.status) })])));
      });
      // The newest status and location any entry in the history set.
      var st = null, loc = '';
      for (var j = entries.length - 1; j >= 0 && (st == null || !loc); j--) {
        if (st == null && entries[j].status != null) st = entries[j].status;
        if (!loc) loc = place(entries[j]);
      }
      ui.status.textContent = st == null ? '—' : st;
      ui.status.title = st == null ? '' : st;
      ui.location.textContent = loc || ui.chLoc || '—';
    }

    function updateTimes() {
      var lastE = state.entries[state.entries.length - 1];
      ui.lastAt.textContent = lastE ? ago(parseTime(lastE.created_at)) : '—';
      ui.fields.forEach(function (u) { if (isFinite(u.lastT)) u.when.textContent = ago(u.lastT) + ' · ' + fmtDateTime(u.lastT); });
    }

    function setLive(s, text) {
      state.live = s;
      ui.live.className = 'live ' + s;
      ui.live.textContent = text;
      ui.live.setAttribute('data-state', s);
    }

    function connect() {
      if (closed) return;
      // since= resumes after the history just loaded; on an automatic
      // reconnect the browser sends Last-Event-ID, which the server prefers.
      es = new EventSource('/channels/' + id + '/events?since=' + state.lastEntryId + keyQuery(state.key));
      es.onopen = function () { setLive('on', 'Live'); };
      es.onmessage = function (ev) {
        var e;
        try { e = JSON.parse(ev.data); } catch (err) { return; }
        if (e && typeof e.entry_id === 'number') addEntry(e);
      };
      es.onerror = function () {
        if (es.readyState === EventSource.CLOSED) {
          // Refused (access revoked, server gone): try again later from scratch.
          setLive('off', 'Offline');
          es.close();
          retryTimer = setTimeout(connect, 10000);
        } else {
          setLive('wait', 'Reconnecting…');
        }
      };
    }
  }

  // Feed reads ask for each entry's status and location too.
  var EXTRA = '&status=true&location=true';

  // place formats an entry's or a channel's latitude, longitude and
  // elevation, or '' when it has none.
  function place(o) {
    if (o.latitude == null || o.longitude == null || o.latitude === '' || o.longitude === '') return '';
    return o.latitude + ', ' + o.longitude + (o.elevation != null && o.elevation !== '' ? ' · ' + o.elevation + ' m' : '');
  }

  // ---------- SVG line chart ----------
  var TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map(function (s) { return s * 1000; });

  function niceStep(span, count) {
    var raw = span / Math.max(count, 1);
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  }
  function fmtNum(v, step) {
    var d = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
    var a = Math.abs(v);
    if (a >= 1e6 || (a > 0 && a < 1e-4)) return v.toExponential(1);
    return v.toFixed(d);
  }
  function fmtTick(t, step, span) {
    var d = new Date(t);
    if (step >= 86400000 || span > 3 * 86400000) return (d.getMonth() + 1) + '/' + d.getDate();
    if (step < 60000) return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    return pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  function lineChart(box, label) {
    var pts = [], width = 0, height = 0, textOnly = false;
    var root = svg('svg', { role: 'img', 'aria-label': 'Chart of ' + label, preserveAspectRatio: 'none' });
    var tip = el('div', { class: 'tip' });
    var empty = el('div', { class: 'nodata', text: 'No numeric values yet' });
    box.appendChild(root); box.appendChild(tip); box.appendChild(empty);
    var geom = null;
    var ro = new ResizeObserver(function () { draw(); });
    ro.observe(box);
    root.addEventListener('pointermove', hover);
    root.addEventListener('pointerleave', function () { tip.classList.remove('show'); var c = root.querySelector('.cursor'); if (c) c.remove(); });

    function draw() {
      width = box.clientWidth; height = box.clientHeight;
      while (root.firstChild) root.removeChild(root.firstChild);
      root.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
      empty.hidden = pts.length > 0;
      box.classList.toggle('compact', !pts.length && textOnly);
      geom = null;
      if (!pts.length || width < 50) return;
      var t0 = pts[0][0], t1 = pts[pts.length - 1][0];
      var y0 = Infinity, y1 = -Infinity;
      pts.forEach(function (p) { if (p[1] < y0) y0 = p[1]; if (p[1] > y1) y1 = p[1]; });
      if (t1 - t0 < 1000) { t0 -= 30000; t1 += 30000; }
      if (y1 - y0 < 1e-9) { var padY = Math.abs(y0) * 0.1 || 1; y0 -= padY; y1 += padY; }
      var ystep = niceStep(y1 - y0, Math.max(2, Math.floor(height / 45)));
      y0 = Math.floor(y0 / ystep) * ystep; y1 = Math.ceil(y1 / ystep) * ystep;
      // Left margin from the widest y label.
      var labels = [];
      for (var v = y0; v <= y1 + ystep / 2; v += ystep) labels.push([v, fmtNum(v, ystep)]);
      var left = 10 + 6.5 * Math.max.apply(null, labels.map(function (l) { return l[1].length; }));
      var right = 12, top = 8, bottom = 24;
      var W = width - left - right, H = height - top - bottom;
      function X(t) { return left + (t - t0) / (t1 - t0) * W; }
      function Y(v) { return top + (1 - (v - y0) / (y1 - y0)) * H; }
      labels.forEach(function (l) {
        var y = Math.round(Y(l[0])) + 0.5;
        root.appendChild(svg('line', { class: 'gridline', x1: left, x2: left + W, y1: y, y2: y }));
        root.appendChild(svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', text: l[1] }));
      });
      var span = t1 - t0, want = Math.max(2, Math.floor(W / 70)), tstep = TIME_STEPS[TIME_STEPS.length - 1];
      for (var i = 0; i < TIME_STEPS.length; i++) if (span / TIME_STEPS[i] <= want) { tstep = TIME_STEPS[i]; break; }
      var tz = new Date(t0).getTimezoneOffset() * 60000;
      var first = Math.ceil((t0 - tz) / tstep) * tstep + tz;
      if (tstep >= 86400000) first = Math.ceil((t0 - tz) / 86400000) * 86400000 + tz;
      for (var t = first; t <= t1; t += tstep) {
        var x = Math.round(X(t)) + 0.5;
        root.appendChild(svg('line', { class: 'axis', x1: x, x2: x, y1: top + H, y2: top + H + 4 }));
        root.appendChild(svg('text', { x: x, y: top + H + 17, 'text-anchor': 'middle', text: fmtTick(t, tstep, span) }));
      }
      root.appendChild(svg('line', { class: 'axis', x1: left, x2: left + W, y1: top + H + 0.5, y2: top + H + 0.5 }));
      var d = '';
      pts.forEach(function (p, i) { d += (i ? 'L' : 'M') + X(p[0]).toFixed(1) + ' ' + Y(p[1]).toFixed(1); });
      var base = (top + H).toFixed(1);
      root.appendChild(svg('path', { class: 'area', d: d + 'L' + X(pts[pts.length - 1][0]).toFixed(1) + ' ' + base + 'L' + X(pts[0][0]).toFixed(1) + ' ' + base + 'Z' }));
      root.appendChild(svg('path', { class: 'line', d: d }));
      if (pts.length <= 12) pts.forEach(function (p) { root.appendChild(svg('circle', { class: 'dot', cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 3 })); });
      var lp = pts[pts.length - 1];
      root.appendChild(svg('circle', { class: 'dot', cx: X(lp[0]).toFixed(1), cy: Y(lp[1]).toFixed(1), r: 4 }));
      geom = { X: X, Y: Y, top: top, H: H, ystep: ystep };
    }

    function hover(ev) {
      if (!geom) return;
      var r = root.getBoundingClientRect(), x = ev.clientX - r.left, best = null, bd = Infinity;
      pts.forEach(function (p) { var dd = Math.abs(geom.X(p[0]) - x); if (dd < bd) { bd = dd; best = p; } });
      if (!best) return;
      var c = root.querySelector('.cursor');
      if (!c) { c = svg('line', { class: 'cursor' }); root.appendChild(c); }
      var px = geom.X(best[0]);
      c.setAttribute('x1', px); c.setAttribute('x2', px); c.setAttribute('y1', geom.top); c.setAttribute('y2', geom.top + geom.H);
      clear(tip).appendChild(el('b', { text: String(best[1]) }));
      tip.appendChild(document.createTextNode(' · ' + fmtDateTime(best[0])));
      tip.classList.add('show');
      var tx = Math.min(Math.max(px - tip.offsetWidth / 2, 0), width - tip.offsetWidth);
      tip.style.left = tx + 'px';
      tip.style.top = Math.max(geom.Y(best[1]) - 34, 0) + 'px';
    }

    return {
      // set draws the points; text says the field has values, none numeric.
      set: function (p, text) {
        pts = p; textOnly = !!text;
        empty.textContent = textOnly ? 'Text values: no chart' : 'No numeric values yet';
        draw();
      },
      destroy: function () { ro.disconnect(); }
    };
  }

  route();
})();

// feedmq embeddable chart and widgets. The server checked every option and
// put it in data- attributes of #embed; this script reads them as text and
// uses them only as text, SVG attribute values or CSSOM values, never as
// markup or code. History comes from the REST API, and so do new entries
// when dynamic: the page polls it (an event stream per chart would hold one
// of the browser's six connections to the host, and a page with more
// charts than that would leave the rest waiting forever).
(function () {
  'use strict';

  var SVGNS = 'http://www.w3.org/2000/svg';
  var root = document.getElementById('embed');
  if (!root) return;
  var o = root.dataset;
  var field = 'field' + o.field;
  // window.feedmqEmbed exposes the state, for tests.
  var state = window.feedmqEmbed = { kind: o.kind, points: 0, value: null, live: 'off', error: '', retries: 0 };

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); return n; }
  function num(v) { if (v == null || v === '') return NaN; var n = Number(v); return isFinite(n) ? n : NaN; }
  function pad(n) { return n < 10 ? '0' + n : '' + n; }
  function fmtTime(t) {
    var d = new Date(t);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function fail(msg) {
    state.error = msg;
    clear(root).appendChild(el('p', 'embed-error', msg));
    root.setAttribute('data-state', 'error');
  }
  function getJSON(url) {
    return fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'omit' }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (b) {
        if (!r.ok) {
          var e = new Error((b && b.error && b.error.details) || ('HTTP ' + r.status));
          e.status = r.status;
          e.retryAfter = Number(r.headers.get('Retry-After')) || 0;
          throw e;
        }
        if (b === null) throw new Error('The answer was cut off.'); // retried, as no answer
        return b;
      });
    });
  }

  // Sizes and colors: already checked by the server; set through CSSOM.
  if (o.bgcolor) document.body.style.backgroundColor = o.bgcolor;
  var W = Number(o.width), H = Number(o.height);
  if (W > 0) root.style.width = W + 'px';
  if (H > 0) root.style.height = H + 'px';
  if (!(W > 0) || !(H > 0)) root.classList.add('auto');

  // ---------- polling ----------
  // The server gives the poll interval (bounded there too). After a failure
  // that may pass (no answer, 408, 429, 5xx) the step is retried, never
  // given up: first after the interval or 5 s, whichever is shorter, then
  // doubling up to 5 minutes (or the interval, if longer), never sooner than
  // Retry-After, and a little later at random so that many pages refused at
  // once do not all come back at once.
  var POLL = Math.min(Math.max(Number(o.poll) || 15, 1), 600) * 1000;
  var BACKOFF_MIN = Math.min(POLL, 5000), BACKOFF_MAX = Math.max(POLL, 300000);
  function transient(err) {
    var s = err && err.status;
    return !s || s === 408 || s === 429 || s >= 500;
  }
  function setLive(v) { state.live = v; root.setAttribute('data-live', v); }
  var note = null;
  function showNote(msg) {
    if (!note) { note = el('div', 'note'); root.appendChild(note); }
    note.textContent = msg;
  }
  // run calls step (a promise-returning function) now and, while again()
  // is true, every POLL after it succeeds. A transient failure retries it
  // with backoff; any other failure goes to onFail and ends the loop.
  function run(step, again, onFail) {
    var failures = 0;
    function go() {
      // A hidden page asks nothing until it is shown again.
      if (document.hidden) {
        document.addEventListener('visibilitychange', function wake() {
          if (document.hidden) return;
          document.removeEventListener('visibilitychange', wake);
          go();
        });
        return;
      }
      var p;
      try { p = Promise.resolve(step()); } catch (err) { p = Promise.reject(err); }
      p.then(function () {
        failures = 0;
        if (note) showNote('');
        if (again()) { setLive('on'); setTimeout(go, POLL); } else if (state.live !== 'off') setLive('off');
      }, function (err) {
        if (!transient(err)) { onFail(err); return; }
        failures++;
        state.retries++;
        root.setAttribute('data-retries', String(state.retries));
        var d = Math.min(BACKOFF_MIN * Math.pow(2, Math.min(failures - 1, 20)), BACKOFF_MAX);
        if (err.retryAfter > 0) d = Math.min(Math.max(d, err.retryAfter * 1000), BACKOFF_MAX);
        d *= 1 + 0.25 * Math.random();
        state.error = (err && err.message) || 'no answer';
        setLive('retrying');
        if (root.getAttribute('data-state') !== 'ready') root.setAttribute('data-state', 'retrying');
        showNote('No answer from the server; trying again in ' + Math.round(d / 1000) + ' s.');
        setTimeout(go, d);
      });
    }
    go();
  }
  var dynamic = function () { return o.dynamic === 'true'; };
  // newest is the highest entry_id a feed answer knows of: the channel's,
  // or an entry's committed after the channel was read.
  function newest(f) {
    var n = (f && f.channel && f.channel.last_entry_id) || 0;
    ((f && f.feeds) || []).forEach(function (e) { if (e.entry_id > n) n = e.entry_id; });
    return n;
  }
  // recent is the channel's newest n entries by time, every field (no time
  // window, the chart's round).
  function recent(n) { return o.recent + (o.recent.indexOf('?') < 0 ? '?' : '&') + 'results=' + n; }

  // ---------- chart ----------
  var TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map(function (s) { return s * 1000; });
  function niceStep(span, count) {
    var raw = span / Math.max(count, 1), p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  }
  function fmtNum(v, step) {
    var d = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9))), a = Math.abs(v);
    if (a >= 1e6 || (a > 0 && a < 1e-4)) return v.toExponential(1);
    return v.toFixed(d);
  }
  function fmtTick(t, step, span) {
    var d = new Date(t);
    if (step >= 86400000 || span > 3 * 86400000) return (d.getMonth() + 1) + '/' + d.getDate();
    if (step < 60000) return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    return pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  function chart() {
    var pts = [], cap = 0;
    var title = el('div', 'title', o.title);
    var box = el('div', 'plot');
    var pic = svg('svg', { role: 'img', 'aria-label': o.title });
    box.appendChild(pic);
    var tip = el('div', 'tip');
    box.appendChild(tip);
    clear(root).appendChild(title);
    root.appendChild(box);
    new ResizeObserver(draw).observe(box);

    // min and max leave out the points outside them (a sensor's glitches).
    var lo = o.filtermin === '' ? -Infinity : Number(o.filtermin), hi = o.filtermax === '' ? Infinity : Number(o.filtermax);
    function point(e) {
      var y = num(e[field]), t = new Date(e.created_at).getTime();
      return isFinite(y) && isFinite(t) && y >= lo && y <= hi ? [t, y] : null;
    }
    function toPoints(feeds) {
      var out = [];
      (feeds || []).forEach(function (e) { var p = point(e); if (p) out.push(p); });
      return out;
    }
    // known is the newest entry_id the chart has seen, in or out of its
    // points (an entry without a number in the field draws nothing).
    var known = 0, loaded = false;
    function load() {
      return getJSON(o.feed).then(function (feed) {
        pts = toPoints(feed.feeds);
        known = newest(feed);
        cap = Number(o.results) || Math.max(pts.length, 60);
        loaded = true;
        draw();
      });
    }
    // poll asks for the newest entry; only when the channel has more than
    // the chart, for as many as are new (entry_ids only grow, so there are
    // at most newest - known), and adds those past known. Buckets change as
    // entries arrive, so an aggregated chart reads its feed again instead;
    // so does a chart that fell too far behind, or whose channel was
    // cleared. Reads answer in time order, and a new entry may be dated
    // before the chart's newest point (a device sending what it kept
    // offline): then the chart reads its feed again too, so that it shows
    // what a reload would. Such an entry is in the answer, or, dated back
    // beyond it, missing from it; the answer holds every field, so a new
    // entry without the chart's field is never missing.
    function poll() {
      return getJSON(recent(1)).then(function (f) {
        var gap = newest(f) - known;
        if (gap === 0) return;
        if (gap < 0 || o.aggregated === 'true' || gap > cap) return load();
        var n = Math.min(gap + 10, 8000); // a few more, for entries committed meanwhile
        return getJSON(recent(n)).then(function (g) { return add(g, n); });
      });
    }
    function add(f, asked) {
      var top = newest(f);
      if (top - known > asked) return load(); // more arrived than were asked for
      var fresh = (f.feeds || []).filter(function (e) { return e.entry_id > known; });
      var latest = pts.length ? pts[pts.length - 1][0] : -Infinity;
      if (fresh.length !== top - known || fresh.some(function (e) { return new Date(e.created_at).getTime() < latest; })) {
        return load();
      }
      fresh.forEach(function (e) {
        var p = point(e);
        if (p) pts.push(p);
      });
      if (pts.length > cap) pts.splice(0, pts.length - cap);
      known = top;
      draw();
    }
    run(function () { return loaded ? poll() : load(); }, dynamic, function (err) { fail(err.message); });

    function draw() {
      var width = box.clientWidth, height = box.clientHeight;
      clear(pic);
      pic.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
      pic.setAttribute('data-points', String(pts.length));
      state.points = pts.length;
      root.setAttribute('data-points', String(pts.length));
      root.setAttribute('data-lasty', pts.length ? String(pts[pts.length - 1][1]) : '');
      root.setAttribute('data-state', 'ready');
      var type = o.type, horiz = type === 'bar';
      if (width < 60 || height < 40) return;
      if (!pts.length) {
        pic.appendChild(svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'nodata' }, 'No numeric values'));
        return;
      }
      var t0 = pts[0][0], t1 = pts[pts.length - 1][0], y0 = Infinity, y1 = -Infinity;
      pts.forEach(function (p) { if (p[1] < y0) y0 = p[1]; if (p[1] > y1) y1 = p[1]; });
      if (type === 'bar' || type === 'column') { y0 = Math.min(y0, 0); y1 = Math.max(y1, 0); }
      if (t1 - t0 < 1000) { t0 -= 30000; t1 += 30000; }
      if (o.yaxismin !== '') y0 = Number(o.yaxismin);
      if (o.yaxismax !== '') y1 = Number(o.yaxismax);
      if (y1 - y0 < 1e-9) { var py = Math.abs(y0) * 0.1 || 1; if (o.yaxismax === '') y1 = y0 + py; else y0 = y1 - py; }
      var fixed = o.yaxismin !== '' || o.yaxismax !== '';
      var vlen = horiz ? width : height;
      var ystep = niceStep(y1 - y0, Math.max(2, Math.floor(vlen / (horiz ? 80 : 45))));
      if (o.yaxismin === '') y0 = Math.floor(y0 / ystep) * ystep;
      if (o.yaxismax === '') y1 = Math.ceil(y1 / ystep) * ystep;
      var labels = [];
      for (var v = Math.ceil(y0 / ystep - 1e-9) * ystep; v <= y1 + 1e-9 * ystep; v += ystep) labels.push([v, fmtNum(v, ystep)]);
      var left = 30 + (horiz ? 60 : 6.5 * Math.max.apply(null, labels.map(function (l) { return l[1].length; })));
      var right = 12, top = 8, bottom = 40;
      var PW = width - left - right, PH = height - top - bottom;
      if (PW < 10 || PH < 10) return;
      // Value and time positions; a bar chart swaps the axes.
      function V(y) { return horiz ? left + (y - y0) / (y1 - y0) * PW : top + (1 - (y - y0) / (y1 - y0)) * PH; }
      // Bars sit in slots: half a slot in from either end, so that none
      // covers an axis or is cut off.
      var bars = type === 'bar' || type === 'column', inset = bars ? (horiz ? PH : PW) / (2 * pts.length) : 0;
      function T(t) {
        var f = (t - t0) / (t1 - t0);
        return horiz ? top + inset + f * (PH - 2 * inset) : left + inset + f * (PW - 2 * inset);
      }
      labels.forEach(function (l) {
        var p = Math.round(V(l[0])) + 0.5;
        if (horiz) {
          pic.appendChild(svg('line', { class: 'gridline', x1: p, x2: p, y1: top, y2: top + PH }));
          pic.appendChild(svg('text', { x: p, y: top + PH + 14, 'text-anchor': 'middle' }, l[1]));
        } else {
          pic.appendChild(svg('line', { class: 'gridline', x1: left, x2: left + PW, y1: p, y2: p }));
          pic.appendChild(svg('text', { x: left - 6, y: p + 4, 'text-anchor': 'end' }, l[1]));
        }
      });
      var span = t1 - t0, want = Math.max(2, Math.floor((horiz ? PH / 40 : PW / 70))), tstep = TIME_STEPS[TIME_STEPS.length - 1];
      for (var i = 0; i < TIME_STEPS.length; i++) if (span / TIME_STEPS[i] <= want) { tstep = TIME_STEPS[i]; break; }
      var tz = new Date(t0).getTimezoneOffset() * 60000;
      var first = Math.ceil((t0 - tz) / tstep) * tstep + tz;
      if (tstep >= 86400000) first = Math.ceil((t0 - tz) / 86400000) * 86400000 + tz;
      for (var t = first; t <= t1; t += tstep) {
        var p = Math.round(T(t)) + 0.5;
        if (horiz) pic.appendChild(svg('text', { x: left - 6, y: p + 4, 'text-anchor': 'end' }, fmtTick(t, tstep, span)));
        else pic.appendChild(svg('text', { x: p, y: top + PH + 14, 'text-anchor': 'middle' }, fmtTick(t, tstep, span)));
      }
      pic.appendChild(horiz ? svg('line', { class: 'axis', x1: left + 0.5, x2: left + 0.5, y1: top, y2: top + PH })
        : svg('line', { class: 'axis', x1: left, x2: left + PW, y1: top + PH + 0.5, y2: top + PH + 0.5 }));
      // Axis titles.
      pic.appendChild(svg('text', { class: 'axistitle', x: left + PW / 2, y: height - 6, 'text-anchor': 'middle' }, horiz ? o.yaxis : o.xaxis));
      pic.appendChild(svg('text', { class: 'axistitle', x: 12, y: top + PH / 2, 'text-anchor': 'middle', transform: 'rotate(-90 12 ' + (top + PH / 2) + ')' }, horiz ? o.xaxis : o.yaxis));

      var color = o.color, g = svg('g', { class: 'series' });
      if (bars) {
        var n = pts.length, slot = (horiz ? PH : PW) / Math.max(n, 1), bw = Math.max(1, Math.min(slot * 0.8, 40));
        var zero = V(Math.max(y0, Math.min(0, y1)));
        pts.forEach(function (p) {
          var c = T(p[0]), v = V(p[1]);
          var a = horiz ? { x: Math.min(zero, v), y: c - bw / 2, width: Math.abs(v - zero), height: bw }
            : { x: c - bw / 2, y: Math.min(zero, v), width: bw, height: Math.abs(v - zero) };
          a.class = 'pt'; a.fill = color;
          g.appendChild(svg('rect', a));
        });
      } else {
        var xy = pts.map(function (p) { return [T(p[0]), V(p[1])]; }), d = '';
        xy.forEach(function (q, i) {
          if (!i) { d = 'M' + q[0].toFixed(1) + ' ' + q[1].toFixed(1); return; }
          var r = xy[i - 1];
          if (type === 'step') d += 'H' + q[0].toFixed(1) + 'V' + q[1].toFixed(1);
          else if (type === 'spline') {
            // Catmull-Rom through the points, as cubic Bézier segments.
            var a = xy[i - 2] || r, b = xy[i + 1] || q;
            d += 'C' + (r[0] + (q[0] - a[0]) / 6).toFixed(1) + ' ' + (r[1] + (q[1] - a[1]) / 6).toFixed(1) + ' ' +
              (q[0] - (b[0] - r[0]) / 6).toFixed(1) + ' ' + (q[1] - (b[1] - r[1]) / 6).toFixed(1) + ' ' + q[0].toFixed(1) + ' ' + q[1].toFixed(1);
          } else d += 'L' + q[0].toFixed(1) + ' ' + q[1].toFixed(1);
        });
        g.appendChild(svg('path', { class: 'line', d: d, stroke: color }));
        xy.forEach(function (q) { g.appendChild(svg('circle', { class: 'pt', cx: q[0].toFixed(1), cy: q[1].toFixed(1), r: 3, fill: color })); });
      }
      if (fixed) {
        // Values outside a fixed axis are cut off at the plot's edge.
        var clip = svg('clipPath', { id: 'plotclip' });
        clip.appendChild(svg('rect', { x: left - 4, y: top - 4, width: PW + 8, height: PH + 8 }));
        pic.appendChild(clip);
        g.setAttribute('clip-path', 'url(#plotclip)');
      }
      pic.appendChild(g);
      var shapes = g.querySelectorAll('.pt');
      pts.forEach(function (p, i) {
        shapes[i].addEventListener('pointerenter', function () {
          tip.textContent = p[1] + ' · ' + fmtTime(p[0]);
          tip.classList.add('show');
        });
        shapes[i].addEventListener('pointerleave', function () { tip.classList.remove('show'); });
      });
    }
  }

  // ---------- widgets ----------
  function format(v) {
    var n = num(v), dec = Number(o.decimals);
    if (isFinite(n) && dec >= 0) return n.toFixed(dec);
    return String(v);
  }

  function numeric() {
    var title = el('div', 'title', o.title), value = el('span', 'value', '—'), when = el('div', 'when', '');
    var unit = o.units ? el('span', 'units', o.units) : null;
    var line = el('div', 'valueline');
    line.appendChild(value); if (unit) line.appendChild(unit);
    clear(root).appendChild(title); root.appendChild(line); root.appendChild(when);
    return function (v, t) {
      value.textContent = format(v);
      when.textContent = fmtTime(t);
    };
  }

  function gauge() {
    var min = Number(o.min), max = Number(o.max);
    var title = el('div', 'title', o.title);
    var pic = svg('svg', { viewBox: '0 0 200 145', role: 'img', 'aria-label': o.title });
    var cx = 100, cy = 100, r = 80;
    function at(f) { var a = Math.PI * (1 - f); return [cx + r * Math.cos(a), cy - r * Math.sin(a)]; }
    function arc(f0, f1) {
      var a = at(f0), b = at(f1);
      return 'M' + a[0].toFixed(2) + ' ' + a[1].toFixed(2) + 'A' + r + ' ' + r + ' 0 0 1 ' + b[0].toFixed(2) + ' ' + b[1].toFixed(2);
    }
    pic.appendChild(svg('path', { class: 'track', d: arc(0, 1) }));
    var fill = svg('path', { class: 'fill', d: '' });
    if (o.color) fill.style.stroke = o.color;
    pic.appendChild(fill);
    var needle = svg('line', { class: 'needle', x1: cx, y1: cy, x2: cx - r + 18, y2: cy });
    pic.appendChild(needle);
    pic.appendChild(svg('circle', { class: 'hub', cx: cx, cy: cy, r: 5 }));
    pic.appendChild(svg('text', { class: 'lim', x: cx - r, y: cy + 18, 'text-anchor': 'middle' }, format(min)));
    pic.appendChild(svg('text', { class: 'lim', x: cx + r, y: cy + 18, 'text-anchor': 'middle' }, format(max)));
    var text = svg('text', { class: 'gv', x: cx, y: cy + 38, 'text-anchor': 'middle' }, '—');
    pic.appendChild(text);
    var when = el('div', 'when', '');
    clear(root).appendChild(title); root.appendChild(pic); root.appendChild(when);
    return function (v, t) {
      var n = num(v);
      text.textContent = format(v) + (o.units ? ' ' + o.units : '');
      when.textContent = fmtTime(t);
      if (!isFinite(n)) { fill.setAttribute('d', ''); return; }
      var f = Math.max(0, Math.min(1, (n - min) / (max - min)));
      fill.setAttribute('d', f > 0 ? arc(0, f) : '');
      var p = at(f), k = (r - 18) / r;
      needle.setAttribute('x2', (cx + (p[0] - cx) * k).toFixed(2));
      needle.setAttribute('y2', (cy + (p[1] - cy) * k).toFixed(2));
    };
  }

  function widget(show) {
    function set(e) {
      var v = e[field];
      if (v == null) return;
      state.value = v;
      root.setAttribute('data-value', v);
      show(v, new Date(e.created_at).getTime());
    }
    // The field's newest entry (-1 while it has none), again every poll.
    var shown = 0;
    run(function () {
      return getJSON(o.last).then(function (e) {
        if (e && typeof e.entry_id === 'number' && e.entry_id !== shown) {
          shown = e.entry_id;
          set(e);
        }
        root.setAttribute('data-state', 'ready');
      });
    }, dynamic, function (err) { fail(err.message); });
  }

  if (o.kind === 'chart') chart();
  else if (o.kind === 'numeric') widget(numeric());
  else if (o.kind === 'gauge') widget(gauge());
})();

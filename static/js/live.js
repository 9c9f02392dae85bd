/* Ackly live events page: websocket + HTTP catch-up, pause/resume, filters applied as you type,
 * chart, rejections, detail drawer. Uses time.js (AcklyTime) and socket.js (AcklySocket), no
 * other dependency. Every value from the server reaches the DOM through textContent, never HTML. */
(function () {
  "use strict";

  var MAX_ROWS = 500;          // rows kept in the DOM; older ones are dropped (Load older refetches)
  var MAX_BUFFER = 5000;       // items held while paused
  var CATCHUP_SLACK_MS = 5000; // rows committed slightly out of order are still fetched (deduped)
  var CATCHUP_MAX_PAGES = 10;
  var FILTER_DELAY_MS = 300;   // typing pause before the feed reloads with the new filters
  var HOUR_MS = 3600000;
  var STATUSES = ["success", "partial", "failure", "timeline"];

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  var config = readJSON("live-config");
  if (!config) return;
  var filters = config.filters || {};

  var feedEl = document.getElementById("feed");
  var emptyEl = document.getElementById("feed-empty");
  var connEl = document.getElementById("conn");
  var pauseBtn = document.getElementById("pause");
  var newBtn = document.getElementById("new-count");
  var olderBtn = document.getElementById("older");

  var byId = new Map();   // id -> item, for the rows on the page and the buffer
  var queue = [];         // arrived, waiting for the next animation frame
  var buffer = [];        // arrived while paused
  var paused = false;
  var frame = 0;
  var live = null;        // the AcklySocket
  var stopped = false;
  var catchingUp = null;

  // ---- time and formatting ----------------------------------------------------------------
  function ms(iso) { return iso ? Date.parse(iso) : 0; }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function duration(item) {
    if (item.kind === "event") {
      var v = item.durationMs;
      if (v === null || v === undefined) return "";
      return v < 1000 ? Math.round(v) + " ms" : (v / 1000).toFixed(1) + " s";
    }
    var s = item.duration;
    if (s === null || s === undefined) return "";
    return s < 60 ? s + " s" : Math.floor(s / 60) + " m " + (s % 60) + " s";
  }
  function sourceName(item) {
    var s = item.source;
    return s && typeof s === "object" ? (s.name || s.slug || s.id || "") : (s || "");
  }
  function sourceId(item) {
    var s = item.source;
    return s && typeof s === "object" ? s.id : s;
  }
  function workerName(item) {
    var w = item.worker;
    return w && typeof w === "object" ? (w.displayName || w.id || "") : (w || "");
  }

  // ---- rows -------------------------------------------------------------------------------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  // A cell whose text may be cut short by an ellipsis carries it whole in its title.
  function cell(cls, text) {
    var e = el("span", cls, text);
    e.title = String(text);
    return e;
  }

  // The same markup workspaces/rows.py writes for the rows the page arrives with.
  function renderRow(item) {
    var isEvent = item.kind === "event";
    var li = el("li", "row row-" + item.kind + " row-new");
    li.dataset.id = item.id;
    li.dataset.received = item.receivedAt;
    var a = el("a", "row-link");
    a.href = config.detailUrl.replace("__id__", encodeURIComponent(item.id));
    var label = (isEvent ? item.status : item.category) || "";
    var badge = el("span", "badge badge-" + (isEvent ? item.status : "timeline"));
    badge.title = label;
    badge.appendChild(el("span", "badge-text", label));
    a.appendChild(badge);
    var main = el("span", "row-main");
    main.appendChild(cell("row-type", item.eventType || "—"));
    main.appendChild(cell("row-message", isEvent ? (item.message || "") : workerName(item)));
    a.appendChild(main);
    a.appendChild(cell("row-source", sourceName(item)));
    a.appendChild(cell("row-worker", isEvent ? (item.externalId || "") : workerName(item)));
    a.appendChild(el("span", "row-duration", duration(item)));
    a.appendChild(AcklyTime.make(item.receivedAt, "relative", "row-time"));
    li.appendChild(a);
    return li;
  }

  function newestReceived() {
    var first = feedEl.firstElementChild;
    return first ? first.dataset.received : null;
  }
  function oldestReceived() {
    var last = feedEl.lastElementChild;
    return last ? last.dataset.received : null;
  }

  // metadata's JSON text as search_events matches it on PostgreSQL (jsonb::text): ": " and ", "
  // between members, and an object's keys shortest first, then by their UTF-8 bytes. SQLite
  // keeps the order the sender gave (docs/decisions.md, "Live rows are matched against the text
  // PostgreSQL searches").
  var utf8 = new TextEncoder();
  function jsonbKeyOrder(a, b) {
    var x = utf8.encode(a), y = utf8.encode(b);
    if (x.length !== y.length) return x.length - y.length;
    for (var i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
    return 0;
  }
  function jsonbText(value) {
    if (Array.isArray(value)) return "[" + value.map(jsonbText).join(", ") + "]";
    if (value !== null && typeof value === "object") {
      return "{" + Object.keys(value).sort(jsonbKeyOrder).map(function (k) {
        return JSON.stringify(k) + ": " + jsonbText(value[k]);
      }).join(", ") + "}";
    }
    return JSON.stringify(value);
  }

  // The page's filters, applied to live rows the way the server applies them to the feed.
  function matches(item) {
    if (filters.source && sourceId(item) !== filters.source) return false;
    if (filters.status && (item.kind !== "event" || item.status !== filters.status)) return false;
    if (filters.category && (item.kind !== "timeline" || item.category !== filters.category)) return false;
    // A prefix, as the server matches it ("deploy." finds deploy.started and deploy.finished).
    if (filters.eventType && (item.eventType || "").indexOf(filters.eventType) !== 0) return false;
    if (filters.q) {
      var q = filters.q.toLowerCase();
      var w = item.worker && typeof item.worker === "object" ? item.worker : {};
      // Within one field, as the server matches it (never across two): an event's message,
      // externalId and metadata; a timeline event's worker (name or externalId) and metadata.
      var fields = [item.message, item.externalId, w.displayName, w.externalId,
                    item.metadata === undefined || item.metadata === null ? "" : jsonbText(item.metadata)];
      if (!fields.some(function (f) { return String(f || "").toLowerCase().indexOf(q) !== -1; })) return false;
    }
    return true;
  }

  // Items go through here from the socket, the catch-up fetch and the pause buffer.
  function accept(items) {
    var fresh = [];
    for (var i = 0; i < items.length; i++) {
      var it = items[i];
      if (!it || !it.id || byId.has(it.id) || !matches(it)) continue;
      byId.set(it.id, it);
      fresh.push(it);
    }
    if (!fresh.length) return;
    if (paused) {
      for (var j = 0; j < fresh.length; j++) buffer.push(fresh[j]);
      if (buffer.length > MAX_BUFFER) {
        buffer.splice(0, buffer.length - MAX_BUFFER).forEach(function (x) { byId.delete(x.id); });
      }
      newBtn.textContent = buffer.length + " new";
      newBtn.hidden = false;
      return;
    }
    for (var k = 0; k < fresh.length; k++) queue.push(fresh[k]);
    if (!frame) frame = requestAnimationFrame(flush);
  }

  // One DOM insertion per frame however many messages arrived: the list is never re-rendered.
  function flush() {
    frame = 0;
    if (!queue.length) return;
    var items = queue;
    queue = [];
    items.sort(function (a, b) { return ms(b.receivedAt) - ms(a.receivedAt); });
    var top = ms(newestReceived());
    var frag = document.createDocumentFragment();
    var stragglers = [];
    for (var i = 0; i < items.length; i++) {
      if (!top || ms(items[i].receivedAt) >= top) frag.appendChild(renderRow(items[i]));
      else stragglers.push(items[i]);
    }
    feedEl.insertBefore(frag, feedEl.firstChild);
    // Rare: a row committed after a newer one; walk down to its place instead of the top.
    for (var s = 0; s < stragglers.length; s++) {
      var row = renderRow(stragglers[s]);
      var at = ms(stragglers[s].receivedAt);
      var node = feedEl.firstElementChild;
      while (node && ms(node.dataset.received) > at) node = node.nextElementSibling;
      feedEl.insertBefore(row, node);
    }
    while (feedEl.children.length > MAX_ROWS) {
      byId.delete(feedEl.lastElementChild.dataset.id);
      feedEl.removeChild(feedEl.lastElementChild);
      olderBtn.hidden = false;
    }
    emptyEl.hidden = feedEl.children.length > 0;
    chart.add(items);
  }

  function setPaused(value) {
    paused = value;
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    pauseBtn.setAttribute("aria-pressed", String(paused));
    document.body.classList.toggle("is-paused", paused);
    if (!paused) {
      var held = buffer;
      buffer = [];
      newBtn.hidden = true;
      for (var i = 0; i < held.length; i++) queue.push(held[i]);
      if (queue.length && !frame) frame = requestAnimationFrame(flush);
    }
    // A stopped pill keeps what it says (and its link): pausing changes nothing there.
    if (!stopped) setConn(connState);
  }
  pauseBtn.addEventListener("click", function () { setPaused(!paused); });
  newBtn.addEventListener("click", function () { setPaused(false); });

  // ---- HTTP: catch-up and load older ------------------------------------------------------
  function feedUrl(extra) {
    var p = new URLSearchParams(filters);
    Object.keys(extra).forEach(function (k) { if (extra[k]) p.set(k, extra[k]); });
    return config.feedUrl + "?" + p.toString();
  }
  function getFeed(extra) {
    return fetch(feedUrl(extra), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401 || r.status === 403 || r.redirected) { stop("Signed out"); throw new Error("auth"); }
        if (r.status === 400) {
          return r.json().then(function (body) {
            throw new FilterError((body.error && body.error.message) || "Invalid filter");
          });
        }
        if (!r.ok) throw new Error("feed " + r.status);
        return r.json();
      })
      .then(function (body) { return body.items || []; });
  }

  function FilterError(message) { this.message = message; }

  // Everything since the newest row the page has, page by page until the gap is closed.
  function catchUp() {
    if (catchingUp) return catchingUp;
    var newest = newestReceived();
    var after = newest ? new Date(ms(newest) - CATCHUP_SLACK_MS).toISOString() : "";
    var limit = 500;
    var pages = 0;
    function page(before) {
      return getFeed({ after: after, before: before, limit: String(limit) }).then(function (items) {
        accept(items);
        pages += 1;
        if (items.length >= limit && pages < CATCHUP_MAX_PAGES && after) {
          return page(items[items.length - 1].receivedAt);
        }
      });
    }
    catchingUp = page("").catch(function () {}).then(function () { catchingUp = null; });
    return catchingUp;
  }

  // Rows fetched over HTTP go at the bottom, without the arrival highlight; the count added.
  function appendRows(items) {
    var frag = document.createDocumentFragment();
    var added = 0;
    items.forEach(function (it) {
      if (byId.has(it.id)) return;
      byId.set(it.id, it);
      var row = renderRow(it);
      row.classList.remove("row-new");
      frag.appendChild(row);
      added += 1;
    });
    feedEl.appendChild(frag);
    return added;
  }

  olderBtn.addEventListener("click", function () {
    var oldest = oldestReceived();
    olderBtn.disabled = true;
    getFeed({ before: oldest, limit: String(config.pageSize) }).then(function (items) {
      var added = appendRows(items);
      olderBtn.hidden = items.length < config.pageSize || added === 0;
    }).catch(function () {}).then(function () { olderBtn.disabled = false; });
  });

  // ---- websocket (socket.js: the reconnect rule shared with the worker page) ------------
  var connState = "idle";
  function setConn(state, text) {
    connState = state;
    var labels = { live: "Live", reconnecting: "Reconnecting…", idle: "Connecting…", stopped: text || "Offline" };
    var shown = paused && state === "live" ? "paused" : state;
    connEl.className = "pill pill-" + shown;
    connEl.textContent = shown === "paused" ? "Paused" : (text || labels[state]);
  }

  function stop(text) {
    if (live) live.stop(text);
    else { stopped = true; setConn("stopped", text); }
  }

  function onState(state, label, code) {
    if (state === "stopped") {
      stopped = true;
      setConn("stopped", label);
      if (code === 4401 && connEl.dataset.loginUrl) {
        var link = document.createElement("a");
        link.href = connEl.dataset.loginUrl;
        link.textContent = "Log in";
        connEl.appendChild(document.createTextNode(" · "));
        connEl.appendChild(link);
      }
      return;
    }
    setConn(state);
  }

  function onMessage(data) {
    if (data.type === "events" || data.type === "timeline") accept(data.items || []);
    else if (data.type === "rejections") rejections.add(data.items || []);
  }

  // ---- chart: events per hour of the browser's zone by status, stacked bars in inline SVG ---
  // The server counts quarter hours (UTC-aligned); any zone's hour (+05:30, +05:45 too) is the
  // sum of four of them, so the bars follow the browser's own hours.
  var chart = (function () {
    var data = readJSON("live-chart") || { start: null, stepSeconds: 900, series: {} };
    var box = document.getElementById("chart");
    var pending = 0;
    var NS = "http://www.w3.org/2000/svg";
    var step = (data.stepSeconds || 900) * 1000;
    var start = data.start ? ms(data.start) : 0;
    var length = start ? (data.series.success || []).length : 0;
    var hourLabel = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    function svg(tag, attrs) {
      var e = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
      return e;
    }
    // Move the window so the quarter holding `at` is its last one.
    function shiftTo(at) {
      var index = Math.floor((at - start) / step);
      var over = index - (length - 1);
      if (over <= 0) return;
      start += over * step;
      STATUSES.forEach(function (s) {
        var q = data.series[s];
        for (var i = 0; i < over; i++) { q.push(0); q.shift(); }
      });
    }
    // The last 24 hours of the browser's zone, each {at, counts by status}.
    function hours() {
      var top = new Date();
      top.setMinutes(0, 0, 0);
      var first = top.getTime() - 23 * HOUR_MS;
      var out = [];
      for (var h = 0; h < 24; h++) {
        var counts = {};
        STATUSES.forEach(function (s) { counts[s] = 0; });
        out.push({ at: first + h * HOUR_MS, counts: counts });
      }
      for (var i = 0; i < length; i++) {
        var bucket = Math.floor((start + i * step - first) / HOUR_MS);
        if (bucket < 0 || bucket >= 24) continue;
        STATUSES.forEach(function (s) { out[bucket].counts[s] += (data.series[s] || [])[i] || 0; });
      }
      return out;
    }
    function draw() {
      pending = 0;
      if (!box) return;
      var bars = hours();
      // Drawn at the box's real pixel size so text stays legible at 375 px and 1440 px alike.
      var W = Math.max(240, box.clientWidth || 720), H = box.clientHeight || 160;
      var padL = 34, padB = 20, padT = 8;
      var n = bars.length;
      var totals = bars.map(function (b) {
        return STATUSES.reduce(function (sum, s) { return sum + b.counts[s]; }, 0);
      });
      var max = Math.max.apply(null, totals.concat([1]));
      // A round axis top (1, 2 or 5 times a power of ten) so the mid line is a whole number.
      var mag = Math.pow(10, Math.floor(Math.log10(max)));
      var top = [1, 2, 5, 10].map(function (m) { return m * mag; })
        .filter(function (v) { return v >= max; })[0];
      if (top < 2) top = 2;
      var root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg" });
      var plotH = H - padB - padT, plotW = W - padL, bw = plotW / n;
      [0, 0.5, 1].forEach(function (f) {
        var y = padT + plotH * (1 - f);
        root.appendChild(svg("line", { x1: padL, x2: W, y1: y, y2: y, class: "grid" }));
        var label = svg("text", { x: padL - 6, y: y + 3, class: "axis", "text-anchor": "end" });
        label.textContent = String(Math.round(top * f));
        root.appendChild(label);
      });
      bars.forEach(function (b, i) {
        var y = padT + plotH;
        var x = padL + i * bw + bw * 0.15;
        var title = svg("title", {});
        var parts = [];
        STATUSES.forEach(function (s) {
          var v = b.counts[s];
          if (!v) return;
          var hgt = plotH * v / top;
          y -= hgt;
          root.appendChild(svg("rect", { x: x, y: y, width: bw * 0.7, height: hgt, class: "bar bar-" + s, rx: 1.5 }));
          parts.push(v + " " + s);
        });
        var hit = svg("rect", { x: padL + i * bw, y: padT, width: bw, height: plotH, class: "hit",
                                "data-hour": new Date(b.at).toISOString(), "data-total": totals[i] });
        title.textContent = hourLabel.format(new Date(b.at)) + " — " + (parts.join(", ") || "no events");
        hit.appendChild(title);
        root.appendChild(hit);
        if (i % 6 === 0 || i === n - 1) {
          var t = svg("text", { x: padL + i * bw + bw / 2, y: H - 5, class: "axis", "text-anchor": "middle" });
          var d = new Date(b.at);
          t.textContent = pad(d.getHours()) + ":" + pad(d.getMinutes());
          root.appendChild(t);
        }
      });
      box.textContent = "";
      box.appendChild(root);
    }
    function add(items) {
      if (!length) return;
      items.forEach(function (it) {
        var at = ms(it.receivedAt);
        shiftTo(at);
        var idx = Math.floor((at - start) / step);
        if (idx < 0 || idx >= length) return;
        var key = it.kind === "event" ? it.status : "timeline";
        if (data.series[key]) data.series[key][idx] += 1;
      });
      // Redraw at most once a second, however fast events arrive.
      if (!pending) pending = setTimeout(draw, 1000);
    }
    draw();
    var resizeTimer = 0;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(draw, 150);
    });
    // A new hour starts a new bar even when nothing arrives.
    setInterval(function () { shiftTo(Date.now()); draw(); }, 60000);
    return { add: add };
  })();

  // ---- rejections panel -------------------------------------------------------------------
  var rejections = (function () {
    var list = document.getElementById("rejections");
    var empty = document.getElementById("rejections-empty");
    // Each live item adds its count (default 1) to the (source, code) total of the last 24 h.
    function add(items) {
      items.forEach(function (it) {
        var sid = sourceId(it) || "";
        var key = sid + "|" + it.code;
        var row = null;
        for (var i = 0; i < list.children.length; i++) {
          if (list.children[i].dataset.key === key) { row = list.children[i]; break; }
        }
        if (!row) {
          row = el("li");
          row.dataset.key = key;
          row.appendChild(el("span", "rej-source", sourceName(it) || sid));
          var code = el("a", "code", it.code);
          code.href = "/docs/errors/" + encodeURIComponent(it.code) + "/";
          row.appendChild(code);
          var count = el("a", "rej-count", "0");  // opens the refused requests behind it
          count.href = list.dataset.requestsUrl + "?source=" + encodeURIComponent(sid) +
            "&code=" + encodeURIComponent(it.code);
          count.title = "Show the refused requests";
          row.appendChild(count);
          list.insertBefore(row, list.firstChild);
        }
        var total = row.querySelector(".rej-count");
        total.textContent = String(Number(total.textContent) + (Number(it.count) || 1));
        row.classList.remove("flash");
        void row.offsetWidth;  // restart the highlight animation
        row.classList.add("flash");
      });
      empty.hidden = list.children.length > 0;
    }
    return { add: add };
  })();

  // ---- detail drawer: a modal dialog; Tab stays inside, Escape closes, focus goes back -----
  var drawer = document.getElementById("drawer");
  var opener = null;
  function openDrawer(item, href, from) {
    document.getElementById("drawer-title").textContent = item.eventType || item.id;
    var dl = document.getElementById("drawer-fields");
    dl.textContent = "";
    var fields = item.kind === "event"
      ? [["Status", item.status], ["Source", sourceName(item)], ["Message", item.message],
         ["Description", item.description], ["External ID", item.externalId],
         ["Duration", duration(item)], ["Received", item.receivedAt, "time"], ["ID", item.id]]
      : [["Category", item.category], ["Source", sourceName(item)], ["Worker", workerName(item)],
         ["Timestamp", item.timestamp, "time"], ["Duration", duration(item)],
         ["Received", item.receivedAt, "time"], ["Request ID", item.requestId], ["ID", item.id]];
    fields.forEach(function (f) {
      if (f[1] === undefined || f[1] === null || f[1] === "") return;
      dl.appendChild(el("dt", "", f[0]));
      var dd = el("dd");
      if (f[2] === "time") dd.appendChild(AcklyTime.make(f[1], "absolute"));
      else dd.textContent = String(f[1]);
      dl.appendChild(dd);
    });
    document.getElementById("drawer-json").textContent =
      item.metadata === undefined ? "null" : JSON.stringify(item.metadata, null, 2);
    document.getElementById("drawer-link").href = href;
    opener = from || document.activeElement;
    drawer.hidden = false;
    drawer.querySelector("[data-close]").focus();
  }
  function closeDrawer() {
    if (drawer.hidden) return;
    drawer.hidden = true;
    // Back to the row that opened it (or, if that row has left the page, its list).
    var back = opener && opener.isConnected ? opener : feedEl;
    opener = null;
    if (back === feedEl) feedEl.tabIndex = -1;
    back.focus();
  }
  function focusables() {
    return Array.prototype.filter.call(
      drawer.querySelectorAll("a[href], button, [tabindex]:not([tabindex='-1'])"),
      function (e) { return !e.disabled && e.getClientRects().length; });
  }
  drawer.addEventListener("click", function (e) {
    if (e.target === drawer || e.target.closest("[data-close]")) closeDrawer();
  });
  document.addEventListener("keydown", function (e) {
    if (drawer.hidden) return;
    if (e.key === "Escape") { e.preventDefault(); closeDrawer(); return; }
    if (e.key !== "Tab") return;
    var all = focusables();
    if (!all.length) return;
    var first = all[0], last = all[all.length - 1];
    var inside = drawer.contains(document.activeElement);
    if (e.shiftKey && (document.activeElement === first || !inside)) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && (document.activeElement === last || !inside)) { e.preventDefault(); first.focus(); }
  });
  // Focus that lands outside (a click on the page behind) is brought back in.
  document.addEventListener("focusin", function (e) {
    if (!drawer.hidden && !drawer.contains(e.target)) drawer.querySelector("[data-close]").focus();
  });
  feedEl.addEventListener("click", function (e) {
    var a = e.target.closest("a.row-link");
    if (!a || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    var item = byId.get(a.parentNode.dataset.id);
    if (!item) return;
    e.preventDefault();
    openDrawer(item, a.href, a);
  });

  // ---- filters: applied as you type, kept in the URL (replaceState) to share and reload ----
  var form = document.getElementById("filters");
  var filterError = document.getElementById("filter-error");
  var clearLink = document.getElementById("filters-clear");
  var toggle = document.getElementById("filters-toggle");
  var filterTimer = 0;
  var filterSeq = 0;
  var FILTER_NAMES = ["q", "source", "status", "category", "eventType", "range"];

  function formFilters() {
    var out = {};
    FILTER_NAMES.forEach(function (name) {
      var field = form.elements[name];
      var v = field ? field.value.trim() : "";
      if (v) out[name] = v;
    });
    // An exact since/until from a shared link stays until the range select replaces it.
    if (filters.since && !out.range) out.since = filters.since;
    if (filters.until) out.until = filters.until;
    return out;
  }
  function showToggle() {
    if (!toggle) return;
    var n = Object.keys(filters).length;
    toggle.textContent = n ? "Filters (" + n + ")" : "Filters";
  }

  function applyFilters() {
    clearTimeout(filterTimer);
    filterTimer = 0;
    var next = formFilters();
    if (JSON.stringify(next) === JSON.stringify(filters)) return;
    filters = next;
    var query = new URLSearchParams(filters).toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    clearLink.hidden = !query;
    showToggle();
    var seq = ++filterSeq;
    // Rows already on the page or held by a pause were chosen by the old filters.
    byId.clear();
    buffer = [];
    queue = [];
    newBtn.hidden = true;
    feedEl.setAttribute("aria-busy", "true");
    getFeed({ limit: String(config.pageSize) }).then(function (items) {
      if (seq !== filterSeq) return;
      filterError.hidden = true;
      feedEl.textContent = "";
      appendRows(items);
      olderBtn.hidden = items.length < config.pageSize;
      emptyEl.hidden = feedEl.children.length > 0;
    }, function (err) {
      if (seq !== filterSeq || !(err instanceof FilterError)) return;
      filterError.textContent = err.message;
      filterError.hidden = false;
    }).then(function () { if (seq === filterSeq) feedEl.removeAttribute("aria-busy"); });
  }
  function later() {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(applyFilters, FILTER_DELAY_MS);
  }
  if (form) {
    form.addEventListener("input", later);
    form.addEventListener("change", applyFilters);
    form.addEventListener("submit", function (e) { e.preventDefault(); applyFilters(); });
  }
  if (toggle && form) {
    // On a phone the filters fold behind this button so the feed starts above the fold.
    toggle.hidden = false;
    form.classList.add("filters-folding");
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      form.classList.toggle("is-open", open);
      if (open) form.elements.q.focus();
    });
    showToggle();
  }

  // ---- start ------------------------------------------------------------------------------
  (readJSON("live-items") || []).forEach(function (it) { byId.set(it.id, it); });
  if (config.live) {
    live = AcklySocket.open(config.socketPath, {
      onOpen: function () { catchUp(); },
      onMessage: onMessage,
      onState: onState
    });
  } else {
    setConn("stopped", "Past range");
    pauseBtn.hidden = true;
  }
})();

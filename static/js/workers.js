/* Worker page: live timeline rows and snapshot cards from the workspace websocket.
   Uses time.js (AcklyTime) and socket.js (AcklySocket: the live page's reconnect rule). On every
   reconnect it reloads cards and the first timeline page over HTTP, so nothing broadcast while
   the socket was down is missed. */
(function () {
  "use strict";

  var configEl = document.getElementById("worker-config");
  if (!configEl) return;
  var config = JSON.parse(configEl.textContent);
  var timeline = document.getElementById("timeline");
  var timelineEmpty = document.getElementById("timeline-empty");
  var cards = document.getElementById("cards");
  var cardsEmpty = document.getElementById("cards-empty");
  var conn = document.getElementById("conn");
  var MAX_ROWS = config.pageSize || 50;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(state, label) {
    conn.className = "pill pill-" + state;
    conn.textContent = label;
  }

  function metadataBlock(value) {
    var details = el("details", "tl-meta");
    details.appendChild(el("summary", "small", "metadata"));
    // textContent, never innerHTML: metadata is whatever the sender wrote.
    details.appendChild(el("pre", "json", JSON.stringify(value, null, 2)));
    return details;
  }

  function timelineRow(item) {
    var li = el("li", "tl-row row-new");
    li.setAttribute("data-id", item.id);
    li.appendChild(el("span", "badge badge-timeline", item.category));
    var main = el("div", "tl-main");
    main.appendChild(el("span", "row-type", item.eventType));
    var sub = (item.source && item.source.name) || "";
    if (item.duration !== null && item.duration !== undefined) sub += " · " + item.duration + " s";
    main.appendChild(el("span", "muted small", sub));
    li.appendChild(main);
    li.appendChild(AcklyTime.make(item.timestamp, "relative", "tl-time"));
    if (item.metadata !== null && item.metadata !== undefined) li.appendChild(metadataBlock(item.metadata));
    return li;
  }

  function metricRows(metrics) {
    var rows = [];
    if (!metrics || typeof metrics !== "object") return rows;
    Object.keys(metrics).forEach(function (name) {
      var raw = metrics[name];
      if (raw && typeof raw === "object") {
        rows.push({ label: raw.label || name, value: raw.value, unit: raw.unit || "" });
      } else {
        rows.push({ label: name, value: raw, unit: "" });
      }
    });
    return rows;
  }

  function snapshotCard(item) {
    var card = el("article", "card snap-card");
    card.setAttribute("data-type", item.snapshotType);
    var head = el("header", "snap-head");
    head.appendChild(el("h3", null, item.snapshotType));
    head.appendChild(AcklyTime.make(item.timestamp, "relative", "muted small"));
    card.appendChild(head);
    var dl = el("dl", "snap-metrics");
    metricRows(item.metrics).forEach(function (m) {
      var wrap = el("div", "snap-metric");
      wrap.appendChild(el("dt", null, m.label));
      var dd = el("dd");
      dd.appendChild(el("span", "snap-value", m.value === null || m.value === undefined ? "None" : m.value));
      if (m.unit) {
        dd.appendChild(document.createTextNode(" "));
        dd.appendChild(el("span", "snap-unit", m.unit));
      }
      wrap.appendChild(dd);
      dl.appendChild(wrap);
    });
    card.appendChild(dl);
    if (item.metadata) card.appendChild(metadataBlock(item.metadata));
    return card;
  }

  function hasRow(id) {
    for (var node = timeline.firstElementChild; node; node = node.nextElementSibling) {
      if (node.getAttribute("data-id") === id) return true;
    }
    return false;
  }

  function prependTimeline(items) {
    if (!config.live || !items.length) return;
    var fragment = document.createDocumentFragment();
    // A broadcast carries items oldest first; the list shows newest first.
    for (var i = items.length - 1; i >= 0; i--) {
      if (!hasRow(items[i].id)) fragment.appendChild(timelineRow(items[i]));
    }
    timeline.insertBefore(fragment, timeline.firstChild);
    while (timeline.children.length > MAX_ROWS) timeline.removeChild(timeline.lastElementChild);
    timelineEmpty.hidden = timeline.children.length > 0;
  }

  function replaceCard(item) {
    var fresh = snapshotCard(item);
    var existing = null;
    for (var node = cards.firstElementChild; node; node = node.nextElementSibling) {
      if (node.getAttribute("data-type") === item.snapshotType) { existing = node; break; }
    }
    if (existing) {
      var shown = existing.querySelector("time");
      // Out-of-order delivery never replaces a newer card (the server keeps the newest too).
      var shownAt = shown ? Date.parse(shown.getAttribute("datetime")) : NaN;
      if (shownAt > Date.parse(item.timestamp)) return;
      cards.replaceChild(fresh, existing);
    } else {
      var before = null;
      for (var n = cards.firstElementChild; n; n = n.nextElementSibling) {
        if (n.getAttribute("data-type") > item.snapshotType) { before = n; break; }
      }
      cards.insertBefore(fresh, before);
    }
    fresh.classList.add("row-new");
    cardsEmpty.hidden = true;
  }

  function forThisWorker(item) {
    return item && item.worker && item.worker.id === config.workerId;
  }

  function reload() {
    fetch(config.feedUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        if (config.live) {
          var fragment = document.createDocumentFragment();
          data.timeline.forEach(function (item) {
            var row = timelineRow(item);
            row.classList.remove("row-new");
            fragment.appendChild(row);
          });
          timeline.replaceChildren(fragment);
          timelineEmpty.hidden = data.timeline.length > 0;
        }
        var cardFragment = document.createDocumentFragment();
        data.snapshots.forEach(function (item) { cardFragment.appendChild(snapshotCard(item)); });
        cards.replaceChildren(cardFragment);
        cardsEmpty.hidden = data.snapshots.length > 0;
      })
      .catch(function () { /* the next reconnect tries again */ });
  }

  function onState(state, label, code) {
    if (state === "live") setStatus("live", "Live");
    else if (state === "reconnecting") setStatus("reconnecting", "Reconnecting…");
    else if (state === "stopped") {
      setStatus("stopped", label);
      if (code === 4401 && conn.dataset.loginUrl) {
        var link = el("a", null, "Log in");
        link.href = conn.dataset.loginUrl;
        conn.appendChild(document.createTextNode(" · "));
        conn.appendChild(link);
      }
    }
  }

  function onMessage(msg) {
    if (msg.type === "timeline" && Array.isArray(msg.items)) {
      prependTimeline(msg.items.filter(forThisWorker));
    } else if (msg.type === "snapshot" && forThisWorker(msg.item) && msg.item.current !== false) {
      replaceCard(msg.item);
    }
  }

  AcklySocket.open(config.socketPath, {
    // The first open follows a fresh page render; later ones must catch up on what was missed.
    onOpen: function (reopened) { if (reopened) reload(); },
    onMessage: onMessage,
    onState: onState
  });
})();

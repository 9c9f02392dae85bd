/* Ackly times (docs/dashboard.md, "Time"): every <time data-when> in the browser's zone.
 * Recent instants read "2 min ago" and stay current; older ones show the local date and time.
 * The title always holds the absolute local time with its zone. Pages' scripts make their own
 * elements with AcklyTime.make(iso) or refresh one with AcklyTime.show(el). No dependencies. */
(function () {
  "use strict";

  var RECENT_MS = 24 * 3600 * 1000;  // within a day either way: relative
  var TICK_MS = 15000;
  var full = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });
  var sameYear = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"
  });
  var otherYear = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"
  });
  var dateOnly = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });

  function relative(delta) {
    var past = delta >= 0;
    var s = Math.round(Math.abs(delta) / 1000);
    if (s < 10) return "just now";
    var text = s < 60 ? s + " s" : s < 3600 ? Math.floor(s / 60) + " min" : Math.floor(s / 3600) + " h";
    return past ? text + " ago" : "in " + text;
  }

  function absolute(d) {
    return (d.getFullYear() === new Date().getFullYear() ? sameYear : otherYear).format(d);
  }

  // The text an instant shows now, for a style: relative, absolute or date.
  function text(d, style, now) {
    if (style === "date") return dateOnly.format(d);
    var delta = now - d.getTime();
    if (style !== "absolute" && Math.abs(delta) < RECENT_MS) return relative(delta);
    return absolute(d);
  }

  function show(el, now) {
    var d = new Date(el.getAttribute("datetime"));
    if (isNaN(d.getTime())) return;
    var t = text(d, el.dataset.when || "relative", now || Date.now());
    if (el.textContent !== t) el.textContent = t;
    var title = full.format(d);
    if (el.title !== title) el.title = title;
  }

  function make(iso, style, cls) {
    var el = document.createElement("time");
    if (cls) el.className = cls;
    el.setAttribute("datetime", iso || "");
    el.dataset.when = style || "relative";
    if (iso) show(el);
    return el;
  }

  function refresh(root) {
    var now = Date.now();
    var all = (root || document).querySelectorAll("time[data-when]");
    for (var i = 0; i < all.length; i++) show(all[i], now);
  }

  window.AcklyTime = { make: make, show: show, refresh: refresh, format: full.format.bind(full) };

  function start() {
    refresh();
    setInterval(function () { if (!document.hidden) refresh(); }, TICK_MS);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

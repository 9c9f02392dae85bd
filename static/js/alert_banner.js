/* The alert banner of every workspace page (templates/alerts/_banner.html renders the firing
 * alerts on load). Pages with a websocket (live events, a worker) pass each frame on as an
 * "ackly:frame" event; an {"type": "alert"} frame adds, updates or resolves a banner line.
 * No dependencies; every value from the server reaches the DOM through textContent. */
(function () {
  "use strict";

  var RESOLVED_SHOWN_MS = 15000;  // a resolution stays readable a while, then the line goes

  var box = document.getElementById("alert-banner");
  if (!box) return;

  function line(id) {
    var all = box.querySelectorAll("[data-alert]");
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute("data-alert") === id) return all[i];
    }
    return null;
  }

  function part(parent, tag, cls) {
    var found = parent.querySelector("." + cls);
    if (found) return found;
    var made = document.createElement(tag);
    made.className = cls;
    parent.appendChild(made);
    parent.appendChild(document.createTextNode(" "));
    return made;
  }

  // The alert's page on this site, from the page's own URL pattern: the frame's absolute URL
  // (made for notifications) never decides where the link goes.
  function pageOf(id) {
    var pattern = box.getAttribute("data-alert-url") || "";
    return pattern && /^alr_[0-9A-Za-z]+$/.test(id) ? pattern.replace("alr_ID", id) : "";
  }

  function show(alert) {
    if (!alert || typeof alert.id !== "string" || !alert.id) return;
    var resolved = alert.state === "resolved";
    var item = line(alert.id);
    if (!item) {
      if (resolved) return;  // nothing shown for it here: nothing to update
      item = document.createElement("p");
      item.setAttribute("data-alert", alert.id);
      box.appendChild(item);
    }
    item.className = "alert-banner-item " + (resolved ? "is-resolved" : "is-firing");
    part(item, "strong", "ab-state").textContent = resolved ? "Resolved:" : "Alert firing:";
    part(item, "span", "ab-rule").textContent = String(alert.rule || "");
    part(item, "span", "ab-reason").textContent = alert.reason ? "— " + String(alert.reason) : "";
    var href = pageOf(alert.id);
    var link = part(item, "a", "ab-link");
    link.textContent = "View alert";
    if (href) link.setAttribute("href", href);
    link.hidden = !href;
    clearTimeout(Number(item.getAttribute("data-timer")) || 0);
    if (resolved) {
      item.setAttribute("data-timer", String(setTimeout(function () {
        if (item.parentNode === box) box.removeChild(item);
        if (!box.querySelector("[data-alert]")) box.textContent = "";  // :empty hides the box
      }, RESOLVED_SHOWN_MS)));
    }
  }

  document.addEventListener("ackly:frame", function (ev) {
    var frame = ev.detail;
    if (frame && frame.type === "alert") show(frame.alert);
  });
})();

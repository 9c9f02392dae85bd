/* The Alerts page listens to the workspace's socket as the live pages do: a firing or a
 * resolution shows in the banner (static/js/alert_banner.js hears every frame) and the page says
 * that its tables are older than that. No dependencies. */
(function () {
  "use strict";

  var configEl = document.getElementById("alerts-config");
  if (!configEl || !window.AcklySocket) return;
  var config = JSON.parse(configEl.textContent);
  var stale = document.getElementById("alerts-stale");

  document.addEventListener("ackly:frame", function (ev) {
    if (stale && ev.detail && ev.detail.type === "alert") stale.hidden = false;
  });
  // The socket's state on the config element: "live" once frames can arrive.
  window.AcklySocket.open(config.socketPath, {
    onState: function (state) { configEl.setAttribute("data-state", state); }
  });
})();

/* Ackly's dashboard websocket, shared by the live page and the worker page: one reconnect rule.
 * "Equal jitter" backoff from 0.5 s doubling to 30 s (half the ceiling plus a random half, so
 * pages spread out after an outage); the browser's offline event drops the socket at once and
 * its online event reconnects at once, as does the page coming back into view. The server's
 * final codes (session or membership over) stop it for good. No dependencies.
 *
 * AcklySocket.open(path, {onOpen(reopened), onMessage(data), onState(state, label, code)})
 * → {stop(), state()}; state is "idle", "live", "reconnecting" or "stopped". */
(function () {
  "use strict";

  var BASE_MS = 500;
  var CAP_MS = 30000;
  // The server closes with these when the session or the membership is over (at the handshake
  // or later: logout, password change, removal); retrying would only hear them again.
  var FINAL = { 4401: "Signed out", 4403: "No access" };

  function open(path, handlers) {
    var socket = null;
    var attempt = 0;
    var timer = 0;
    var opened = false;
    var stopped = false;
    var state = "idle";

    function set(next, label, code) {
      state = next;
      if (handlers.onState) handlers.onState(next, label, code);
    }

    function connect() {
      clearTimeout(timer);
      timer = 0;
      if (stopped || socket) return;
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var ws;
      try {
        ws = new WebSocket(scheme + location.host + path);
      } catch (e) {
        retry();
        return;
      }
      socket = ws;
      ws.onopen = function () {
        attempt = 0;
        set("live");
        // The first open follows a fresh page render; later ones must catch up on what was missed.
        if (handlers.onOpen) handlers.onOpen(opened);
        opened = true;
      };
      ws.onmessage = function (msg) {
        var data;
        try { data = JSON.parse(msg.data); } catch (e) { return; }
        if (handlers.onMessage) handlers.onMessage(data);
        // Frames every page shows (an alert's banner: static/js/alert_banner.js) go to the document.
        document.dispatchEvent(new CustomEvent("ackly:frame", { detail: data }));
      };
      ws.onclose = function (ev) {
        if (socket !== ws) return;
        socket = null;
        if (FINAL[ev.code]) { stop(FINAL[ev.code], ev.code); return; }
        if (!stopped) retry();
      };
    }

    function retry() {
      opened = true;  // whatever happens next is a reconnect: it catches up
      set("reconnecting", "Reconnecting…");
      var ceiling = Math.min(CAP_MS, BASE_MS * Math.pow(2, attempt));
      attempt += 1;
      timer = setTimeout(connect, ceiling / 2 + Math.random() * ceiling / 2);
    }

    // Reconnect now instead of at the end of the backoff: the network or the page is back.
    function now() {
      if (stopped || socket) return;
      attempt = 0;
      connect();
    }

    function stop(label, code) {
      stopped = true;
      clearTimeout(timer);
      set("stopped", label || "Offline", code);
      if (socket) { var ws = socket; socket = null; ws.close(); }
    }

    // The browser knows before the socket does: drop it when offline, retry at once when back.
    window.addEventListener("offline", function () { if (socket) socket.close(); });
    window.addEventListener("online", now);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) now(); });

    connect();
    return { stop: stop, state: function () { return state; } };
  }

  window.AcklySocket = { open: open };
})();

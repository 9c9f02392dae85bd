// Export from the live page: the current filter (the address bar's query, which the filters
// keep current) as CSV or NDJSON. Read as a stream so the page can say how far it has got;
// without script the links download directly.
(function () {
  "use strict";
  var box = document.getElementById("export");
  if (!box || !window.fetch || !window.ReadableStream) return;
  var progress = document.getElementById("export-progress");
  var cancel = document.getElementById("export-cancel");
  var running = null;

  function size(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KB";
    return (bytes / 1048576).toFixed(1) + " MB";
  }

  function say(text) { progress.textContent = text; }

  function save(blob, name) {
    var url = URL.createObjectURL(blob);
    var a = document.createElement("a");
    a.href = url; a.download = name; a.hidden = true;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
  }

  function run(link) {
    if (running) running.abort();
    var controller = running = new AbortController();
    var url = link.pathname + window.location.search;
    var parts = [], received = 0, lines = 0, ndjson = /\.ndjson$/.test(link.pathname);
    cancel.hidden = false;
    say("Exporting…");
    fetch(url, { credentials: "same-origin", signal: controller.signal }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (body) {
          throw new Error((body.error && body.error.message) || ("HTTP " + response.status));
        });
      }
      var name = (/filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "") || [])[1] || "ackly-export";
      var reader = response.body.getReader();
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) return name;
          parts.push(step.value);
          received += step.value.length;
          for (var i = 0; i < step.value.length; i++) if (step.value[i] === 10) lines++;
          say("Exporting… " + (ndjson ? lines.toLocaleString() + " events, " : "") + size(received));
          return pump();
        });
      }
      return pump();
    }).then(function (name) {
      save(new Blob(parts, { type: ndjson ? "application/x-ndjson" : "text/csv" }), name);
      say("Exported " + (ndjson ? lines.toLocaleString() + " events, " : "") + size(received) + ".");
    }).catch(function (err) {
      say(err.name === "AbortError" ? "Export cancelled." : "Export failed: " + err.message);
    }).then(function () {
      if (running === controller) running = null;
      cancel.hidden = true;
    });
  }

  box.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-export]");
    if (!link) return;
    event.preventDefault();
    run(link);
  });
  cancel.addEventListener("click", function () { if (running) running.abort(); });
})();

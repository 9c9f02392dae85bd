/* Sources page: copy buttons for the once-shown key and curl examples; confirm before revoking.
   Dependency-free; the page works without it (the key field is selectable, forms still post). */
(function () {
  "use strict";

  function textOf(el) {
    return el.tagName === "INPUT" || el.tagName === "TEXTAREA" ? el.value : el.textContent;
  }

  function fallbackCopy(el, text) {
    // Older browsers and plain-http pages without navigator.clipboard: select and execCommand.
    if (el.select) {
      el.focus();
      el.select();
    } else {
      var range = document.createRange();
      range.selectNodeContents(el);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  function flash(button, label) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = label;
    window.setTimeout(function () { button.textContent = original; }, 1600);
  }

  document.addEventListener("click", function (ev) {
    var button = ev.target.closest("[data-copy]");
    if (!button) return;
    var target = document.querySelector(button.getAttribute("data-copy"));
    if (!target) return;
    var text = textOf(target);
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { flash(button, "Copied"); },
        function () { flash(button, fallbackCopy(target, text) ? "Copied" : "Press Ctrl+C"); }
      );
    } else {
      flash(button, fallbackCopy(target, text) ? "Copied" : "Press Ctrl+C");
    }
  });

  document.addEventListener("submit", function (ev) {
    var question = ev.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) ev.preventDefault();
  });

  var secret = document.getElementById("secret");
  if (secret) secret.addEventListener("focus", function () { secret.select(); });
})();

/* Keyboard access to sideways-scrolling tables (docs/dashboard.md, "Accessibility"): a
 * .table-wrap whose table is wider than the screen becomes a focusable, named region, so arrow
 * keys can scroll it; one that fits stays out of the tab order. No dependencies. */
(function () {
  "use strict";

  function label(wrap) {
    var section = wrap.closest("section, .card");
    var heading = section && section.querySelector("h1, h2, h3");
    return (heading ? heading.textContent.trim() : "Table") + " (scrolls sideways)";
  }

  function update() {
    var wraps = document.querySelectorAll(".table-wrap");
    for (var i = 0; i < wraps.length; i++) {
      var wrap = wraps[i];
      if (wrap.scrollWidth > wrap.clientWidth + 1) {
        wrap.tabIndex = 0;
        wrap.setAttribute("role", "region");
        wrap.setAttribute("aria-label", label(wrap));
      } else if (wrap.hasAttribute("tabindex")) {
        wrap.removeAttribute("tabindex");
        wrap.removeAttribute("role");
        wrap.removeAttribute("aria-label");
      }
    }
  }

  var timer = 0;
  window.addEventListener("resize", function () { clearTimeout(timer); timer = setTimeout(update, 150); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", update);
  else update();
})();

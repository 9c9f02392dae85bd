/* Selects the whole value of a [data-select-on-focus] field when it gets focus (a once-shown
   key is copied whole), instead of an inline onfocus handler the Content-Security-Policy blocks. */
(function () {
  "use strict";
  document.addEventListener("focusin", function (ev) {
    if (ev.target.matches && ev.target.matches("[data-select-on-focus]")) ev.target.select();
  });
})();

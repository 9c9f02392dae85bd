/* The rule form shows the fields of the chosen kind only (templates/alerts/rule_form.html marks
 * each group and field with data-kinds). Without script every field shows, each group named by
 * its legend, and the server reads only the chosen kind's fields anyway. No dependencies. */
(function () {
  "use strict";

  var form = document.getElementById("rule-form");
  var kind = form && form.querySelector("[name=kind]");
  if (!kind) return;

  function apply() {
    var marked = form.querySelectorAll("[data-kinds]");
    for (var i = 0; i < marked.length; i++) {
      var kinds = marked[i].getAttribute("data-kinds").split(" ");
      marked[i].hidden = kinds.indexOf(kind.value) === -1;
    }
  }

  kind.addEventListener("change", apply);
  apply();
})();

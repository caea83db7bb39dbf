// The console's only script (served by the gateway; the CSP allows no inline script).
// Progressive: every page works without it; with it, destructive forms ask first.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form && form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// tailgate console: progress while a slow form (connect, verify,
// disconnect) is sent, and the refresh of an open run's page. The pages
// work without it.
"use strict";
document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var busy = form.getAttribute("data-busy");
  if (!busy || ev.defaultPrevented) { return; }
  if (form.getAttribute("aria-busy") === "true") { ev.preventDefault(); return; }
  form.setAttribute("aria-busy", "true");
  var buttons = form.querySelectorAll("button[type=submit]");
  for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
  var status = form.querySelector(".busy");
  if (status) { status.textContent = busy; status.classList.add("on"); }
});
(function () {
  var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (every > 0) {
    setTimeout(function () {
      var a = document.activeElement;
      if (!a || a === document.body) { location.reload(); }
    }, every * 1000);
  }
})();

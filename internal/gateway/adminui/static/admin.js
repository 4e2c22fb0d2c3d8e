// tailgate gateway admin page: reloads the request counts every few
// seconds (the section's data-refresh) while the page is visible. The
// page works without it (its "reload" link).
"use strict";
(function () {
  var box = document.getElementById("counts");
  var every = box ? parseInt(box.getAttribute("data-refresh") || "0", 10) * 1000 : 0;
  if (!every || !window.fetch || !window.DOMParser) { return; }
  function later() { setTimeout(tick, every); }
  function tick() {
    if (document.hidden) { later(); return; }
    fetch("/ui/counts", { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("counts: " + r.status); }
      return r.text();
    }).then(function (html) {
      var next = new DOMParser().parseFromString(html, "text/html").getElementById("counts");
      if (next) {
        next = document.importNode(next, true);
        box.replaceWith(next);
        box = next;
      }
    }).catch(function () {}).then(later);
  }
  later();
})();

// Progressive enhancement only: every page works without this file.
// The overview's usage panel refreshes itself every 3 seconds from /console/usage, a
// server-rendered (escaped) fragment, so the figures follow calls as they settle. It pauses
// while the tab is hidden and stops after 15 minutes without keyboard or pointer input, so an
// unattended tab neither keeps polling (each refresh is an audited API read) nor stays awake:
// the refresh does not count as use for the session's idle timeout.
"use strict";
(function () {
  var panel = document.getElementById("usage-live");
  if (!panel) return;
  var src = panel.getAttribute("data-src");
  var IDLE_MS = 15 * 60 * 1000;
  var lastInput = Date.now();
  ["keydown", "pointerdown", "pointermove", "wheel"].forEach(function (e) {
    document.addEventListener(e, function () { lastInput = Date.now(); }, { passive: true });
  });
  function schedule(ms) { setTimeout(tick, ms); }
  function tick() {
    if (document.hidden || Date.now() - lastInput > IDLE_MS) return schedule(3000);
    fetch(src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error("signed out");
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        panel.replaceChildren.apply(panel, Array.prototype.slice.call(doc.body.childNodes));
        schedule(3000);
      })
      .catch(function () { schedule(15000); });
  }
  schedule(3000);
})();

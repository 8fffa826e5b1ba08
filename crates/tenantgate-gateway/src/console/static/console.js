// Progressive enhancement only: every page works without this file.
// The overview's usage panel refreshes itself every 2 seconds from /console/usage, a
// server-rendered (escaped) fragment, so the figures follow calls as they settle.
"use strict";
(function () {
  var panel = document.getElementById("usage-live");
  if (!panel) return;
  var src = panel.getAttribute("data-src");
  function refresh() {
    fetch(src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error("signed out");
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        panel.replaceChildren.apply(panel, Array.prototype.slice.call(doc.body.childNodes));
        setTimeout(refresh, 2000);
      })
      .catch(function () { setTimeout(refresh, 10000); });
  }
  setTimeout(refresh, 2000);
})();

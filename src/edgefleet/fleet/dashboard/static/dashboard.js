// Live updates by short polling: every element with data-live="URL" is refetched as an HTML
// fragment (URL + fragment=1) and replaced when it changed. No third-party code.
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  var live = document.getElementById("live");

  function fragmentUrl(url) {
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + "fragment=1";
  }

  function refresh(element) {
    return fetch(fragmentUrl(element.dataset.live), {credentials: "same-origin", cache: "no-store"})
      .then(function (response) {
        if (response.status === 401) {
          window.location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
          throw new Error("logged out");
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (element.dataset.html === html) { return; }
        // Charts are images whose URL names their sampling period: load the new ones before
        // the swap, so that a chart the server is still drawing never shows as a blank box.
        return preload(html).then(function () {
          element.innerHTML = html;
          element.dataset.html = html;
        });
      });
  }

  function preload(html) {
    var scratch = document.createElement("template");
    scratch.innerHTML = html;
    var images = scratch.content.querySelectorAll("img[src]");
    return Promise.all(Array.prototype.map.call(images, function (img) {
      return new Promise(function (done) {
        var loader = new Image();
        loader.onload = loader.onerror = function () { done(); };
        loader.src = img.getAttribute("src");
      });
    }));
  }

  function tick() {
    var elements = document.querySelectorAll("[data-live]");
    if (!elements.length) { return; }
    Promise.all(Array.prototype.map.call(elements, refresh)).then(function () {
      if (live) { live.className = "live ok"; live.title = "updated " + new Date().toLocaleTimeString(); }
    }, function () {
      if (live) { live.className = "live stale"; live.title = "the server did not answer the last refresh"; }
    }).then(function () { setTimeout(tick, PERIOD_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[data-live]")) { setTimeout(tick, PERIOD_MS); }
  });
})();

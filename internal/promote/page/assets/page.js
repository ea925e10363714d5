// kropipe pipeline page: live updates from the promoter's event stream and soak
// countdowns. The page reads and acts without this script; it only keeps it current.
"use strict";
(function () {
  var live = document.getElementById("live");

  function say(text) { if (live) { live.textContent = text; } }

  function pad(n) { return n < 10 ? "0" + n : "" + n; }

  function ago(seconds) {
    if (seconds < 60) { return seconds + "s ago"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + "m ago"; }
    if (seconds < 86400) { return Math.floor(seconds / 3600) + "h ago"; }
    return Math.floor(seconds / 86400) + "d ago";
  }

  // Soak countdowns (<time class="countdown">) count down; other times read as "5m ago",
  // with the absolute time the server wrote kept as the tooltip.
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time:not(.countdown)").forEach(function (t) {
      if (!t.title) { t.title = t.textContent; }
      t.textContent = ago(Math.max(0, Math.round((now - Date.parse(t.getAttribute("datetime"))) / 1000)));
    });
    document.querySelectorAll("time.countdown").forEach(function (t) {
      var left = Math.max(0, Math.round((Date.parse(t.getAttribute("datetime")) - now) / 1000));
      var h = Math.floor(left / 3600), m = Math.floor(left / 60) % 60, s = left % 60;
      t.textContent = "in " + (h > 0 ? h + "h" + pad(m) + "m" : m + "m") + pad(s) + "s";
    });
  }

  // Fetches this page again and swaps its main part: for stage pages (history, tags)
  // and when stages came or went.
  function refresh() {
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main"), old = document.getElementById("main");
        if (fresh && old) { old.replaceWith(document.adoptNode(fresh)); tick(); }
        say("updated " + new Date().toLocaleTimeString());
      })
      .catch(function () { say("update failed; reload the page"); });
  }

  function connect(url) {
    var es = new EventSource(url);
    es.addEventListener("open", function () { document.body.setAttribute("data-live", "open"); say("live"); });
    es.addEventListener("error", function () { document.body.setAttribute("data-live", "closed"); say("reconnecting…"); });
    es.addEventListener("cards", function (e) {
      var cards = JSON.parse(e.data);
      Object.keys(cards).forEach(function (id) {
        var old = document.getElementById(id);
        if (!old) { return; }
        var tpl = document.createElement("template");
        tpl.innerHTML = cards[id];
        var focused = old.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
        old.replaceWith(tpl.content);
        if (focused) {
          var again = document.getElementById(id).querySelector('[href="' + focused + '"]');
          if (again) { again.focus(); }
        }
      });
      tick();
      say("updated " + new Date().toLocaleTimeString());
    });
    es.addEventListener("stage", refresh);
    es.addEventListener("layout", refresh);
  }

  var url = document.body.getAttribute("data-events");
  if (url && window.EventSource) { connect(url); }
  tick();
  setInterval(tick, 1000);
})();

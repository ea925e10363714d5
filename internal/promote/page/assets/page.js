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
        if (fresh && old) { old.replaceWith(document.adoptNode(fresh)); servedNow(); tick(); }
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
      refilter();
      recount();
      tick();
      say("updated " + new Date().toLocaleTimeString());
    });
    es.addEventListener("stage", refresh);
    es.addEventListener("layout", refresh);
  }

  // The filter box (filter.go's Filter, mirrored): every word of q in a card's data-q, the
  // state among its data-state, and with view=attention one of the attention states. The
  // server already applied the filter the page was opened with; typing narrows at once,
  // here, and a wider filter than the server's asks the server again.
  var attention = ["failed", "waiting-approval", "inconclusive", "paused", "held"];
  function matches(card, words, state, attn) {
    var text = card.getAttribute("data-q") || "", states = (card.getAttribute("data-state") || "").split(" ");
    for (var i = 0; i < words.length; i++) { if (text.indexOf(words[i]) < 0) { return false; } }
    if (state && states.indexOf(state) < 0) { return false; }
    if (attn && !states.some(function (s) { return attention.indexOf(s) >= 0; })) { return false; }
    return true;
  }
  function words(q) { return q.toLowerCase().split(/\s+/).filter(function (w) { return w; }); }
  // served is the filter the server applied to the page as loaded (read again after the
  // page's main part is fetched anew).
  var served = null;
  function filterOf(find) {
    var view = find.elements.view;
    return { words: words(find.elements.q.value), state: find.elements.state.value, attn: !!(view && view.value === "attention") };
  }
  // narrower says whether the page as served already holds every card f keeps.
  function narrower(f) {
    if (!served || (served.state && served.state !== f.state)) { return false; }
    return served.words.every(function (w) { return f.words.some(function (n) { return n.indexOf(w) >= 0; }); });
  }
  // refilter hides the cards, lanes and sections the filter box leaves out.
  function refilter() {
    var find = document.getElementById("find");
    if (!find) { return; }
    var f = filterOf(find), shown = 0;
    document.querySelectorAll("article.card[data-q]").forEach(function (c) {
      var ok = matches(c, f.words, f.state, f.attn);
      c.hidden = !ok;
      if (ok) { shown++; }
    });
    document.querySelectorAll("section.lane, details.section").forEach(function (l) {
      l.hidden = !l.querySelector("article.card[data-q]:not([hidden])");
    });
    var counter = document.getElementById("shown");
    if (counter) { counter.textContent = shown + " of " + counter.getAttribute("data-total"); }
  }
  // recount keeps the header's attention counts current after live updates, when the page
  // holds every card (it was served unfiltered).
  function recount() {
    if (!served || served.words.length || served.state || served.attn) { return; }
    var total = 0, counts = {};
    document.querySelectorAll("article.card[data-state]").forEach(function (c) {
      var states = c.getAttribute("data-state").split(" "), needs = false;
      attention.forEach(function (a) {
        if (states.indexOf(a) >= 0) { counts[a] = (counts[a] || 0) + 1; needs = true; }
      });
      if (needs) { total++; }
    });
    var all = document.querySelector(".attention a.all b");
    if (all) { all.textContent = total; }
    attention.forEach(function (a) {
      var b = document.querySelector(".attention a.a-" + a + " b");
      if (b) { b.textContent = counts[a] || 0; }
    });
  }
  function onFilter(e) {
    var find = document.getElementById("find");
    if (!find || !find.contains(e.target)) { return; }
    if (e.target.name === "group-by") { find.submit(); return; }
    if (e.target.name !== "q" && e.target.name !== "state") { return; }
    var params = new URLSearchParams(new FormData(find));
    ["q", "state", "group-by"].forEach(function (k) { if (!params.get(k)) { params.delete(k); } });
    var target = "/" + (params.toString() ? "?" + params.toString() : "");
    if (!narrower(filterOf(find))) { location.assign(target); return; }
    refilter();
    history.replaceState(null, "", target);
  }
  document.addEventListener("input", onFilter);
  function servedNow() {
    var find = document.getElementById("find");
    served = find ? filterOf(find) : null;
  }
  servedNow();

  var url = document.body.getAttribute("data-events");
  if (url && window.EventSource) { connect(url); }
  tick();
  setInterval(tick, 1000);
})();

// Berth studio: draws each <figure class="chart"> from /studio/data/metrics with uPlot
// (drag to zoom, double-click to reset), refreshes charts every 10 s, and follows a job's log
// with server-sent events. Pages work without it; this only adds the live parts.
(function () {
  "use strict";
  function drawChart(fig) {
    var url = "/studio/data/metrics?run=" + encodeURIComponent(fig.dataset.run) +
      "&keys=" + encodeURIComponent(fig.dataset.keys) + "&x=" + encodeURIComponent(fig.dataset.x || "step");
    return fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (d) {
      var series = (d.series || []).filter(function (s) { return s.x.length > 0; });
      var old = fig.querySelector(".uplot, .empty");
      if (old) { old.remove(); }
      if (series.length === 0) {
        var p = document.createElement("p"); p.className = "empty"; p.textContent = "No points yet.";
        fig.appendChild(p); fig.dataset.points = "0"; return;
      }
      // One x axis for all: the union of the series' x values.
      var xs = Array.from(new Set([].concat.apply([], series.map(function (s) { return s.x; })))).sort(function (a, b) { return a - b; });
      var data = [xs].concat(series.map(function (s) {
        var at = new Map(); s.x.forEach(function (x, i) { at.set(x, s.y[i]); });
        return xs.map(function (x) { return at.has(x) ? at.get(x) : null; });
      }));
      var colours = ["#0645ad", "#a10f0f", "#0a6b2d", "#8a4b00"];
      var opts = {
        width: Math.min(fig.clientWidth || 800, 1100), height: 240,
        scales: { x: { time: fig.dataset.x === "time", range: function (u, min, max) {
          // One point: a minute (or a step) either side, not years.
          var pad = fig.dataset.x === "time" ? 60 : 1;
          return min === max ? [min - pad, max + pad] : [min, max];
        } } },
        series: [{ label: fig.dataset.x === "time" ? "time" : "step" }].concat(series.map(function (s, i) {
          return { label: s.key, stroke: colours[i % colours.length], width: 2, spanGaps: true };
        })),
      };
      new uPlot(opts, data, fig);
      fig.dataset.points = String(series.reduce(function (n, s) { return n + s.x.length; }, 0));
      fig.dataset.peak = String(Math.max.apply(null, series[0].y.filter(function (v) { return v !== null; }).concat([0])));
    }).catch(function () {});
  }
  function drawAll() { document.querySelectorAll("figure.chart").forEach(drawChart); }
  function followLog(pre) {
    if (!window.EventSource) { return; }
    var es = new EventSource(pre.dataset.src);
    es.onmessage = function (e) {
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent += e.data;
      if (atEnd) { pre.scrollTop = pre.scrollHeight; }
    };
    es.addEventListener("end", function () {
      es.close();
      pre.dataset.ended = "1";
      // The job ended while the page was open: show its final status.
      if (pre.dataset.live === "1") { location.reload(); }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (window.uPlot) { drawAll(); setInterval(drawAll, 10000); }
    var log = document.getElementById("log");
    if (log) { followLog(log); }
  });
})();

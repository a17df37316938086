// Draws each <figure class="chart"> with Chart.js from the JSON next to it, and redraws it when
// its x column or series change (the page's address follows, so a chart can be shared as a link).
// Several sources (two runs compared) share colours per series and differ by line style. Series
// ticked under "Right axis" are drawn against a second y axis (Chart.js's own multi-axis support),
// so that 20 °C beside 5,000 kW is not a flat line.
(function () {
  "use strict";
  var COLOURS = ["#0b5cad", "#b3261e", "#1a7f37", "#8250df", "#bc4c00", "#0a7f86", "#6e7781", "#cf222e"];

  // The x column is no series of its own: its boxes are switched off while it is the x axis.
  function choice(form) {
    var x = form.querySelector("select[name=x]").value;
    function ticked(name) {
      var names = [];
      form.querySelectorAll("input[name=" + name + "]").forEach(function (box) {
        box.disabled = box.value === x;
        if (box.checked && !box.disabled) names.push(box.value);
      });
      return names;
    }
    var series = ticked("series");
    var right = ticked("right").filter(function (name) { return series.indexOf(name) >= 0; });
    // A second axis only when both sides have a series: all on one side is one axis.
    if (right.length === series.length) right = [];
    return { x: x, series: series, right: right };
  }

  function config(payload, chosen) {
    var numericX = payload.sources.every(function (s) { return s.numeric.indexOf(chosen.x) >= 0; });
    var labels = [];
    if (!numericX) {
      var seen = {};
      payload.sources.forEach(function (s) {
        (s.columns[chosen.x] || []).forEach(function (v) {
          var key = String(v);
          if (!seen[key]) { seen[key] = true; labels.push(key); }
        });
      });
    }
    var datasets = [];
    payload.sources.forEach(function (source, sourceIndex) {
      var xs = source.columns[chosen.x] || [];
      chosen.series.forEach(function (name, seriesIndex) {
        var ys = source.columns[name];
        if (!ys) return;
        var points = [];
        for (var i = 0; i < xs.length; i++) {
          if (xs[i] === null || xs[i] === "") continue;
          points.push({ x: numericX ? xs[i] : String(xs[i]), y: ys[i] });
        }
        datasets.push({
          label: payload.sources.length > 1 ? source.label + ": " + name : name,
          yAxisID: chosen.right.indexOf(name) >= 0 ? "y2" : "y",
          data: points,
          borderColor: COLOURS[seriesIndex % COLOURS.length],
          backgroundColor: COLOURS[seriesIndex % COLOURS.length],
          borderDash: sourceIndex ? [6, 4] : [],
          borderWidth: 2,
          pointRadius: 0,
          spanGaps: true,
        });
      });
    });
    var twoAxes = chosen.right.length > 0;
    var left = chosen.series.filter(function (name) { return chosen.right.indexOf(name) < 0; });
    return {
      type: "line",
      data: numericX ? { datasets: datasets } : { labels: labels, datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: { type: numericX ? "linear" : "category", title: { display: true, text: chosen.x } },
          y: { position: "left", title: { display: twoAxes, text: left.join(", ") } },
          y2: {
            position: "right",
            display: twoAxes,
            title: { display: twoAxes, text: chosen.right.join(", ") },
            grid: { drawOnChartArea: false }, // one grid, the left axis's
          },
        },
      },
    };
  }

  function setUp(figure) {
    if (figure.dataset.drawn || !window.Chart) return;
    figure.dataset.drawn = "true";
    var payload = JSON.parse(document.getElementById(figure.dataset.source).textContent);
    var form = figure.querySelector("form.chart-controls");
    var canvas = figure.querySelector("canvas");
    var chart = new window.Chart(canvas, config(payload, choice(form)));
    form.addEventListener("change", function () {
      chart.destroy(); // a new x column may need another kind of scale
      chart = new window.Chart(canvas, config(payload, choice(form)));
      var query = new URLSearchParams(new FormData(form)).toString();
      window.history.replaceState(null, "", window.location.pathname + "?" + query);
    });
    form.addEventListener("submit", function (event) { event.preventDefault(); });
  }

  function setUpAll() {
    document.querySelectorAll("figure.chart").forEach(setUp);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUpAll);
  else setUpAll();
  // Charts that arrive later in a fragment (the run page's results, once its run has ended).
  document.addEventListener("htmx:afterSettle", setUpAll);
})();

// Tollhouse charts: the one place that knows Chart.js (static/vendor/chart.umd.min.js, loaded first).
//
// A page renders its data with Django's json_script and a canvas that points at it:
//
//   {{ spend_chart|json_script:"spend-data" }}
//   <div class="chart"><canvas data-chart data-source="spend-data" aria-label="Spend per day"></canvas></div>
//   {% include "console/_chart_scripts.html" %}
//
// and every such canvas is drawn when this script loads (TollhouseCharts.renderAll()). The data is
// a "spec":
//
//   { "type": "line" | "bar",              default "line"
//     "labels": ["2026-12-01", ...],        x axis, already in the tenant's time zone
//     "unit": "USD" | "ms" | "tokens" | "requests" | "%" | "tok/s" | "",   y axis and tooltips
//     "stacked": false,
//     "series": [ { "label": "Spend", "data": [1.5, null, ...],
//                   "type": "bar"|"line" (mixed charts), "dashed": false, "color": "#3b5bdb",
//                   "fill": false } ],
//     "markers": [ { "at": "2026-12-03" (a label) or 3 (an index), "text": "50 % alert" } ],
//     "empty": "No calls in this range yet" }   text shown when there is nothing to draw
//
// A page with more to do (a per-model picker, say) calls TollhouseCharts.draw(canvas, spec) itself
// and gets the Chart back; TollhouseCharts.data(id) reads a json_script element; .format(v, unit)
// formats a value as the axis does.
"use strict";
(function () {
  var PALETTE = ["#3b5bdb", "#f08c00", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#e8590c", "#5c940d", "#868e96"];

  function format(value, unit) {
    if (value === null || value === undefined || isNaN(value)) return "–";
    var v = Number(value);
    switch (unit) {
      case "USD":
        var digits = Math.abs(v) >= 1 || v === 0 ? 2 : Math.abs(v) >= 0.01 ? 4 : 6;
        return "$" + v.toLocaleString("en-US", { minimumFractionDigits: Math.min(digits, 2), maximumFractionDigits: digits });
      case "ms":
        return v >= 1000 ? (v / 1000).toLocaleString("en-US", { maximumFractionDigits: 1 }) + " s"
                           : v.toLocaleString("en-US", { maximumFractionDigits: 0 }) + " ms";
      case "%":
        return v.toLocaleString("en-US", { maximumFractionDigits: 1 }) + " %";
      case "tok/s":
        return v.toLocaleString("en-US", { maximumFractionDigits: 1 }) + " tok/s";
      case "tokens":
      case "requests":
        return compact(v) + (unit === "tokens" ? " tok" : "");
      default:
        return compact(v);
    }
  }

  function compact(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toLocaleString("en-US", { maximumFractionDigits: 1 }) + "B";
    if (a >= 1e6) return (v / 1e6).toLocaleString("en-US", { maximumFractionDigits: 1 }) + "M";
    if (a >= 1e4) return (v / 1e3).toLocaleString("en-US", { maximumFractionDigits: 1 }) + "k";
    return v.toLocaleString("en-US", { maximumFractionDigits: 2 });
  }

  function data(id) {
    var element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function isEmpty(spec) {
    return !spec.series || !spec.series.some(function (s) {
      return (s.data || []).some(function (v) { return v !== null && v !== undefined; });
    });
  }

  // Vertical dashed lines with a caption (budget alerts on the spend chart), and the "empty" text.
  var overlay = {
    id: "tollhouseOverlay",
    afterDatasetsDraw: function (chart) {
      var spec = chart.options.plugins.tollhouseOverlay || {};
      var ctx = chart.ctx, area = chart.chartArea, x = chart.scales.x;
      ctx.save();
      if (spec.empty) {
        ctx.fillStyle = "#667085";
        ctx.font = "14px system-ui, sans-serif";
        ctx.textAlign = "center";
        ctx.fillText(spec.empty, (area.left + area.right) / 2, (area.top + area.bottom) / 2);
      }
      (spec.markers || []).forEach(function (marker) {
        var index = typeof marker.at === "number" ? marker.at : chart.data.labels.indexOf(marker.at);
        if (index < 0 || !x) return;
        var px = x.getPixelForValue(index);
        ctx.strokeStyle = "#c92a2a";
        ctx.setLineDash([4, 4]);
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.moveTo(px, area.top);
        ctx.lineTo(px, area.bottom);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = "#c92a2a";
        ctx.font = "12px system-ui, sans-serif";
        ctx.textAlign = px > (area.left + area.right) / 2 ? "right" : "left";
        ctx.fillText(marker.text || "", px + (ctx.textAlign === "right" ? -4 : 4), area.top + 12);
      });
      ctx.restore();
    }
  };

  function draw(canvas, spec) {
    if (!window.Chart) throw new Error("Chart.js is not loaded (static/vendor/chart.umd.min.js)");
    var unit = spec.unit || "";
    var empty = isEmpty(spec);
    var datasets = (spec.series || []).map(function (s, i) {
      var color = s.color || PALETTE[i % PALETTE.length];
      var type = s.type || spec.type || "line";
      return {
        label: s.label,
        data: s.data,
        type: type,
        borderColor: color,
        backgroundColor: type === "bar" ? color + "cc" : color + "22",
        borderWidth: type === "bar" ? 0 : 2,
        borderDash: s.dashed ? [6, 4] : [],
        pointRadius: (s.data || []).length > 48 ? 0 : 2.5,
        pointHoverRadius: 4,
        fill: !!s.fill,
        tension: 0.25,
        spanGaps: true,
        stack: spec.stacked ? "all" : undefined
      };
    });
    var existing = window.Chart.getChart(canvas);
    if (existing) existing.destroy();
    return new window.Chart(canvas, {
      type: spec.type || "line",
      data: { labels: spec.labels || [], datasets: datasets },
      plugins: [overlay],
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: !!spec.stacked, grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 10 } },
          y: {
            stacked: !!spec.stacked,
            beginAtZero: true,
            suggestedMax: empty ? 1 : undefined,
            title: { display: !!unit, text: unit },
            ticks: { callback: function (v) { return format(v, unit); } }
          }
        },
        plugins: {
          legend: { display: datasets.length > 1 || !!spec.legend, position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: function (item) { return item.dataset.label + ": " + format(item.parsed.y, unit); } } },
          tollhouseOverlay: { markers: spec.markers || [], empty: empty ? (spec.empty || "No data in this range yet") : "" }
        }
      }
    });
  }

  function renderAll(root) {
    (root || document).querySelectorAll("canvas[data-chart][data-source]").forEach(function (canvas) {
      var spec = data(canvas.getAttribute("data-source"));
      if (spec) draw(canvas, spec);
    });
  }

  window.TollhouseCharts = { draw: draw, data: data, format: format, renderAll: renderAll };
  renderAll(document);
})();

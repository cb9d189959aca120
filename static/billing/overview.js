// The overview's latency picker: redraw the latency and output-speed charts for one model and/or
// key from the page's JSON endpoint (billing.views.latency_json). Charts are drawn by charts.js.
"use strict";
(function () {
  var card = document.getElementById("latency-card");
  if (!card || !window.TollhouseCharts) return;
  var model = document.getElementById("latency-model");
  var key = document.getElementById("latency-key");

  function redraw() {
    var params = new URLSearchParams(card.getAttribute("data-range") || "");
    if (model.value) params.set("model", model.value);
    if (key.value) params.set("key", key.value);
    card.classList.add("loading");
    fetch(card.getAttribute("data-url") + "?" + params.toString(), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (specs) {
        TollhouseCharts.draw(document.getElementById("chart-latency"), specs.latency);
        TollhouseCharts.draw(document.getElementById("chart-speed"), specs.speed);
      })
      .catch(function (error) { card.setAttribute("data-error", String(error)); })
      .finally(function () { card.classList.remove("loading"); });
  }

  model.addEventListener("change", redraw);
  key.addEventListener("change", redraw);
})();

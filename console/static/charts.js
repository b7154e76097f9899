// Small depth charts (uPlot, vendored) for the overview: one per queue, last hour, redrawn every 10 s.
(function () {
  "use strict";
  const holder = document.getElementById("charts");
  if (!holder || typeof uPlot === "undefined") return;
  const charts = {};

  function draw(series) {
    const names = Object.keys(series.queues).filter((n) => !n.includes(".retry."));
    for (const name of names) {
      const data = [series.t, series.queues[name]];
      if (charts[name]) { charts[name].setData(data); continue; }
      const box = document.createElement("div");
      box.className = "chart";
      const title = document.createElement("div");
      title.className = "title";
      title.textContent = name;
      box.appendChild(title);
      holder.appendChild(box);
      charts[name] = new uPlot({
        width: 300, height: 110, legend: { show: false }, cursor: { show: false },
        scales: { y: { range: (u, min, max) => [0, Math.max(5, max)] } },
        axes: [
          { size: 24, font: "10px sans-serif", values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toTimeString().slice(0, 5)) },
          { size: 36, font: "10px sans-serif" },
        ],
        series: [{}, { stroke: name === "dead-letter" ? "#c62f3b" : "#2459d6", fill: name === "dead-letter" ? "rgba(198,47,59,.08)" : "rgba(36,89,214,.08)", width: 1.5 }],
      }, data, box);
    }
  }

  function refresh() {
    fetch(holder.dataset.series, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((series) => { if (series) draw(series); })
      .catch(() => {});
  }
  refresh();
  setInterval(refresh, 10000);
})();

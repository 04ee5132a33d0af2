// Charts with the vendored Chart.js (static/vendor/chart.umd.min.js, a global `Chart`).
// Every chart made here is destroyed when the page changes (destroyCharts).

import { h } from "./ui.js";

/** Colour-blind-safe palette (Okabe & Ito), then a few more. */
export const PALETTE = [
  "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9",
  "#D55E00", "#F0E442", "#000000", "#7F7F7F", "#8C564B",
];

const live = new Set();

function ChartLib() {
  const lib = globalThis.Chart;
  if (!lib) throw new Error("the chart library did not load");
  if (!lib.defaults.__auie) {
    lib.defaults.__auie = true;
    lib.defaults.animation = false;
    lib.defaults.responsive = true;
    lib.defaults.maintainAspectRatio = false;
    lib.defaults.font.family = getComputedStyle(document.body).fontFamily;
    lib.defaults.color = "#1f2933";
  }
  return lib;
}

export function destroyCharts() {
  for (const chart of live) chart.destroy();
  live.clear();
}

/** A canvas in a sized box; `label` describes the chart to assistive technology. */
export function chartBox(label, kind) {
  const canvas = h("canvas", { role: "img", "aria-label": label });
  const box = h("div", { class: "chart", dataset: { chart: kind } }, canvas);
  return { box, canvas };
}

function make(canvas, config) {
  const chart = new (ChartLib())(canvas, config);
  live.add(chart);
  canvas.dataset.ready = "true";
  return chart;
}

function colour(i) {
  return PALETTE[i % PALETTE.length];
}

/** Line chart; series: [{label, values}]. */
export function lineChart(canvas, labels, series, { yTitle, xTitle } = {}) {
  return make(canvas, {
    type: "line",
    data: {
      labels,
      datasets: series.map((s, i) => ({
        label: s.label,
        data: s.values,
        borderColor: colour(i),
        backgroundColor: colour(i),
        pointRadius: labels.length > 60 ? 0 : 2,
        tension: 0.15,
        borderWidth: 2,
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { display: series.length > 1, position: "bottom" } },
      scales: {
        x: { title: { display: Boolean(xTitle), text: xTitle }, ticks: { maxTicksLimit: 12 } },
        y: { beginAtZero: true, title: { display: Boolean(yTitle), text: yTitle }, ticks: { precision: 0 } },
      },
    },
  });
}

/** Bar chart; series: [{label, values}]; `horizontal` puts labels on the y axis. */
export function barChart(canvas, labels, series, { horizontal = false, yTitle, tooltip } = {}) {
  const valueAxis = horizontal ? "x" : "y";
  return make(canvas, {
    type: "bar",
    data: {
      labels,
      datasets: series.map((s, i) => ({
        label: s.label,
        data: s.values,
        backgroundColor: colour(i),
        borderRadius: 3,
      })),
    },
    options: {
      indexAxis: horizontal ? "y" : "x",
      plugins: {
        legend: { display: series.length > 1, position: "bottom" },
        tooltip: tooltip ? { callbacks: { afterLabel: tooltip } } : {},
      },
      scales: {
        [valueAxis]: {
          beginAtZero: true,
          ticks: { precision: 0 },
          title: { display: Boolean(yTitle), text: yTitle },
        },
      },
    },
  });
}

/**
 * Means with confidence intervals: a floating bar from the interval's low to high end per
 * label, and a marker at the mean. rows: [{label, mean, low, high}] (low/high may be null).
 */
export function intervalChart(canvas, rows, { yTitle, markerLabel = "mean reward" } = {}) {
  return make(canvas, {
    type: "bar",
    data: {
      labels: rows.map((r) => r.label),
      datasets: [
        {
          type: "bar",
          label: "95% confidence interval",
          data: rows.map((r) => (r.low === null || r.high === null ? null : [r.low, r.high])),
          backgroundColor: "rgba(0, 114, 178, 0.25)",
          borderColor: PALETTE[0],
          borderWidth: 1,
          barPercentage: 0.4,
          order: 2,
        },
        {
          type: "line",
          label: markerLabel,
          data: rows.map((r) => r.mean),
          showLine: false,
          pointStyle: "rectRot",
          pointRadius: 7,
          pointHoverRadius: 8,
          backgroundColor: PALETTE[5],
          borderColor: PALETTE[5],
          order: 1,
        },
      ],
    },
    options: {
      plugins: { legend: { position: "bottom" } },
      scales: { y: { title: { display: Boolean(yTitle), text: yTitle } } },
    },
  });
}

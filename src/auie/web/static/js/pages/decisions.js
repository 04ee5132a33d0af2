// Decisions: each decision point's per-arm mean reward with its 95% confidence interval,
// its learning curve, and on request an off-policy comparison of candidate policies.

import { DECIDE } from "../scopes.js";
import { api } from "../api.js";
import { chartBox, intervalChart, lineChart } from "../charts.js";
import { card, formatNumber, formatPercent, h, notice, table } from "../ui.js";

const fixed = (value, digits = 3) =>
  value === null || value === undefined ? "—" : Number(value).toFixed(digits);

/** Cumulative mean reward per arm over time (5-second buckets): the learning curve. */
function learningCurve(history) {
  const minutes = [...new Set(Object.values(history || {}).flat().map((b) => b.at))].sort();
  const series = Object.entries(history || {})
    .filter(([, buckets]) => buckets.length)
    .map(([arm, buckets]) => {
      const byMinute = new Map(buckets.map((b) => [b.at, b]));
      let total = 0;
      let count = 0;
      const values = minutes.map((minute) => {
        const bucket = byMinute.get(minute);
        if (bucket) {
          total += bucket.meanReward * bucket.rewarded;
          count += bucket.rewarded;
        }
        return count ? total / count : null;
      });
      return { label: arm, values };
    });
  return { labels: minutes.map((m) => m.slice(11, 19)), series };
}

function armRows(report) {
  return Object.entries(report.arms || {})
    .map(([arm, stats]) => ({
      label: arm,
      decisions: stats.decisions,
      rewarded: stats.rewarded,
      mean: stats.meanReward,
      low: stats.ci95 ? stats.ci95[0] : null,
      high: stats.ci95 ? stats.ci95[1] : null,
    }))
    .sort((a, b) => a.label.localeCompare(b.label));
}

/** The candidates the dashboard compares with the decision point's current policy. */
const CANDIDATES = [
  { name: "linucb", policy: { type: "linucb" } },
  { name: "thompson", policy: { type: "thompson" } },
  { name: "squarecb", policy: { type: "squarecb" } },
  { name: "epsilon-greedy", policy: { type: "epsilon_greedy" } },
  { name: "baseline", policy: { type: "baseline" } },
];
const ESTIMATORS = ["dr", "snips", "ips", "dm"];
const VERDICT = { better: "better", worse: "worse", inconclusive: "inconclusive" };

/** POST /v1/decisions/evaluate, then a DR chart with intervals and the full table. */
async function evaluate(point, out, button) {
  button.disabled = true;
  out.replaceChildren(h("p", { class: "muted", role: "status" }, "Evaluating on the decision log…"));
  let result;
  try {
    result = await api("/v1/decisions/evaluate", {
      method: "POST",
      body: {
        decisionPoint: point,
        candidates: ["current", ...CANDIDATES],
        bootstrapRounds: 200,
        importanceTop: 0,
      },
    });
  } catch (error) {
    out.replaceChildren(notice(error.message || String(error), "error"));
    return;
  } finally {
    button.disabled = false;
  }
  const verdicts = new Map(result.comparisons.map((c) => [c.name, c]));
  const rows = result.policies.map((p) => ({
    label: p.name,
    mean: p.estimates.dr.value,
    low: p.estimates.dr.lower,
    high: p.estimates.dr.upper,
    policy: p,
    comparison: verdicts.get(p.name),
  }));
  const chart = chartBox(
    `Doubly robust value of each policy on ${point}: ` +
      rows.map((r) => `${r.label} ${fixed(r.mean)}`).join(", "),
    "evaluation",
  );
  chart.box.dataset.point = point;
  const pct = Math.round(result.confidence * 100);
  out.replaceChildren(
    h(
      "p",
      { class: "muted" },
      `${formatNumber(result.rounds)} of ${formatNumber(result.decisions)} logged decisions` +
        (result.pending ? ` (${formatNumber(result.pending)} still in their reward wait)` : "") +
        `; each policy replayed over them (progressive validation), ${pct}% bootstrap ` +
        `intervals; "logging" is what served.`,
    ),
    chart.box,
    table(
      [
        { label: "Policy", value: (r) => r.label, header: true },
        ...ESTIMATORS.map((e) => ({
          label: e.toUpperCase(),
          value: (r) => {
            const est = r.policy.estimates[e];
            return h(
              "span",
              { dataset: { policy: r.label, estimator: e, value: String(est.value) } },
              est.lower === null ? fixed(est.value) : `${fixed(est.value)} [${fixed(est.lower)}, ${fixed(est.upper)}]`,
            );
          },
          num: true,
        })),
        { label: "ESS", value: (r) => formatNumber(Math.round(r.policy.ess ?? 0)), num: true },
        {
          label: "vs current (DR)",
          value: (r) =>
            r.comparison
              ? h("span", { dataset: { verdict: r.comparison.verdict, policy: r.label } }, VERDICT[r.comparison.verdict] ?? r.comparison.verdict)
              : "—",
        },
      ],
      rows,
      { caption: `Off-policy estimates for ${point}` },
    ),
  );
  intervalChart(chart.canvas, rows, {
    yTitle: "estimated reward per decision",
    markerLabel: "doubly robust estimate",
  });
}

async function render(body) {
  const points = await api("/v1/decision-points");
  if (!points.length) {
    body.append(
      h("p", { class: "muted empty" }, "No decision points yet. Create one with PUT /v1/decision-points/{name}."),
    );
    return;
  }
  const reports = await Promise.all(
    points.map((p) => api(`/v1/decision-points/${encodeURIComponent(p.name)}/report`)),
  );
  body.append(
    h(
      "p",
      { class: "muted" },
      "Mean reward of each arm's closed decisions since the server started, with 95% " +
        "confidence intervals (normal approximation).",
    ),
  );
  points.forEach((point, i) => {
    const report = reports[i];
    const rows = armRows(report);
    const chart = chartBox(
      `Mean reward per arm of ${point.name}: ` +
        rows.map((r) => `${r.label} ${fixed(r.mean)}`).join(", "),
      "decision",
    );
    chart.box.dataset.point = point.name;
    const curve = learningCurve(report.history);
    const curveChart = chartBox(
      `Cumulative mean reward per arm of ${point.name} over time`,
      "learning",
    );
    curveChart.box.dataset.point = point.name;
    const evaluation = h("div", { class: "evaluation", dataset: { point: point.name } });
    const button = h("button", { type: "button", dataset: { evaluate: point.name } }, "Compare policies off-policy");
    button.addEventListener("click", () => evaluate(point.name, evaluation, button));
    body.append(
      card(
        point.name,
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Mode"),
          h("dd", {}, report.mode),
          h("dt", {}, "Policy"),
          h("dd", {}, point.config?.policy?.type ?? "—"),
          h("dt", {}, "Policy version"),
          h("dd", {}, report.policyVersion ?? "—"),
          h("dt", {}, "Apprentice agreement"),
          h("dd", {}, formatPercent(report.apprenticeAgreement)),
          h("dt", {}, "Open decisions"),
          h("dd", {}, formatNumber(report.openDecisions)),
        ),
        rows.length ? chart.box : null,
        curve.series.length ? curveChart.box : null,
        table(
          [
            { label: "Arm", value: (r) => r.label, header: true },
            { label: "Decisions", value: (r) => formatNumber(r.decisions), num: true },
            { label: "Rewarded", value: (r) => formatNumber(r.rewarded), num: true },
            {
              label: "Mean reward",
              value: (r) => h("span", { dataset: { arm: r.label, mean: String(r.mean) } }, fixed(r.mean)),
              num: true,
            },
            {
              label: "95% interval",
              value: (r) => (r.low === null ? "—" : `${fixed(r.low)} to ${fixed(r.high)}`),
              num: true,
            },
          ],
          rows,
          { caption: `Arms of ${point.name}`, empty: "No decisions since the server started." },
        ),
        h("h3", {}, "Off-policy comparison"),
        h(
          "p",
          { class: "muted" },
          "What would other policies have earned on the logged decisions? Estimated with " +
            "IPS, SNIPS, the direct method and doubly robust (DR); a policy is better than " +
            "the current one only when its whole DR difference interval is above zero.",
        ),
        button,
        evaluation,
      ),
    );
    if (rows.length) intervalChart(chart.canvas, rows, { yTitle: "mean reward" });
    if (curve.series.length) {
      lineChart(curveChart.canvas, curve.labels, curve.series, {
        yTitle: "cumulative mean reward",
        xTitle: "time (UTC)",
      });
    }
  });
}

export default { id: "decisions", title: "Decisions", scope: DECIDE, render };

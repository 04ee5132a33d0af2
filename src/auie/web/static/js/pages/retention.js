// Retention: cohorts by first start event, and the share returning in each later period,
// as a table coloured by rate (a heat map).

import { ANALYTICS_READ } from "../scopes.js";
import { api } from "../api.js";
import { dateRange, eventNames, nameOptions } from "../data.js";
import { card, field, formatBucket, formatNumber, formatPercent, h, notice, select } from "../ui.js";

/** Background colour for a rate: white (0) to deep blue (1); dark text on light cells. */
export function heat(rate) {
  const t = Math.max(0, Math.min(1, rate));
  const mix = (from, to) => Math.round(from + (to - from) * t);
  return {
    background: `rgb(${mix(247, 8)}, ${mix(251, 69)}, ${mix(255, 148)})`,
    color: t > 0.45 ? "#ffffff" : "#1f2933",
  };
}

async function render(body) {
  const names = await eventNames();
  const start = select(nameOptions(names), names[0] || "");
  const back = select(nameOptions(names), names[0] || "");
  const period = select([["day", "Day"], ["week", "Week"]], "week");
  const periods = h("input", { type: "number", min: "1", max: "100", value: "8", required: true });
  const range = dateRange(56);
  const result = h("div", { class: "result", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "toolbar" },
    field("Start event", start),
    field("Return event", back),
    field("Period", period),
    field("Periods", periods),
    ...range.fields,
    h("button", { type: "submit" }, "Show retention"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      if (!start.value || !back.value) throw new Error("choose a start and a return event");
      const { from, to } = range.value();
      const reply = await api("/v1/analytics/retention", {
        method: "POST",
        body: {
          startEvent: start.value,
          returnEvent: back.value,
          period: period.value,
          periods: Number(periods.value),
          from: from.toISOString(),
          to: to.toISOString(),
        },
      });
      show(result, reply);
    } catch (error) {
      result.replaceChildren(notice(error.message, "error"));
    }
  });
  body.append(form, result);
  if (names.length) form.requestSubmit();
}

function show(result, reply) {
  const columns = Array.from({ length: reply.periods }, (_, k) => k);
  const heading = h(
    "tr",
    {},
    h("th", { scope: "col" }, "Cohort (UTC)"),
    h("th", { scope: "col", class: "num" }, "People"),
    columns.map((k) => h("th", { scope: "col", class: "num" }, `${reply.period} ${k}`)),
  );
  const cohorts = reply.cohorts.filter((cohort) => cohort.size > 0);
  const rows = cohorts.map((cohort) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, formatBucket(cohort.cohort, "day")),
      h("td", { class: "num" }, formatNumber(cohort.size)),
      columns.map((k) => {
        const rate = cohort.rates[k];
        const count = cohort.counts[k];
        if (rate === null || rate === undefined) {
          return h("td", { class: "num cell-empty", title: "not over yet" }, "");
        }
        const cell = h(
          "td",
          {
            class: "num heat",
            title: `${formatNumber(count)} of ${formatNumber(cohort.size)} people`,
            dataset: { rate: String(rate), count: String(count) },
          },
          formatPercent(rate, 0),
        );
        const colours = heat(rate);
        cell.style.backgroundColor = colours.background;
        cell.style.color = colours.color;
        return cell;
      }),
    ),
  );
  const legend = h(
    "div",
    { class: "legend", "aria-hidden": "true" },
    "0%",
    [0, 0.25, 0.5, 0.75, 1].map((rate) => {
      const swatch = h("span", { class: "swatch" });
      swatch.style.backgroundColor = heat(rate).background;
      return swatch;
    }),
    "100%",
  );
  result.replaceChildren(
    card(
      "Retention by cohort",
      cohorts.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "retention", dataset: { chart: "retention" } },
              h(
                "caption",
                {},
                `Share of each ${reply.period}'s new people who came back in later ` +
                  `${reply.period}s (cohorts without new people left out)`,
              ),
              h("thead", {}, heading),
              h("tbody", {}, rows),
            ),
          )
        : h("p", { class: "muted empty" }, "No cohorts in this range."),
      legend,
    ),
  );
  result.dataset.ready = "true";
}

export default { id: "retention", title: "Retention", scope: ANALYTICS_READ, render };

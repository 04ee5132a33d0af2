// Trends: events or people per hour, day or week for chosen events, optionally broken down.

import { ANALYTICS_READ } from "../scopes.js";
import { api } from "../api.js";
import { chartBox, lineChart } from "../charts.js";
import { dateRange, eventNames } from "../data.js";
import {
  card,
  dataDetails,
  field,
  formatBucket,
  formatNumber,
  h,
  notice,
  select,
  table,
  uid,
} from "../ui.js";

const FIELDS = [
  "browser_name", "os_name", "device_type", "utm_source", "utm_medium", "utm_campaign",
  "page_path", "page_host", "context_locale", "type", "source_id",
];

/** A breakdown chooser: none, property, trait, computed trait or event field. */
export function breakdownControls() {
  const kind = select(
    [["", "None"], ["property", "Event property"], ["trait", "Trait"], ["computedTrait", "Computed trait"], ["field", "Event field"]],
    "",
  );
  const name = h("input", { list: "breakdown-fields", spellcheck: "false", disabled: true });
  kind.addEventListener("change", () => {
    name.disabled = !kind.value;
  });
  return {
    fields: [
      field("Breakdown", kind),
      field("Breakdown by", name),
      h("datalist", { id: "breakdown-fields" }, FIELDS.map((f) => h("option", { value: f }))),
    ],
    value() {
      if (!kind.value) return null;
      const text = name.value.trim();
      if (!text) throw new Error("name the property, trait or field to break down by");
      return { [kind.value]: text };
    },
  };
}

function seriesLabel(series) {
  if (series.other) return `${series.event} · other`;
  if (series.breakdown === undefined) return series.event;
  return series.breakdown === null ? series.event : `${series.event} · ${series.breakdown}`;
}

async function render(body) {
  const names = await eventNames();
  const legend = uid("events");
  const boxes = names.slice(0, 40).map((name, i) =>
    h(
      "label",
      { class: "check" },
      h("input", { type: "checkbox", value: name, checked: i < 2, name: "event" }),
      ` ${name}`,
    ),
  );
  const measure = select([["events", "Events"], ["people", "People (unique)"]], "events");
  const interval = select(["hour", "day", "week"], "day");
  const range = dateRange(30);
  const breakdown = breakdownControls();
  const result = h("div", { class: "result", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "builder" },
    h(
      "fieldset",
      { class: "checks", "aria-describedby": legend },
      h("legend", {}, "Events"),
      h("small", { id: legend, class: "muted" }, "Up to 20."),
      boxes.length ? boxes : h("p", { class: "muted" }, "No events yet."),
    ),
    h(
      "div",
      { class: "toolbar" },
      field("Measure", measure),
      field("Interval", interval),
      ...range.fields,
      ...breakdown.fields,
      h("button", { type: "submit" }, "Show trend"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      const events = boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value);
      if (!events.length) throw new Error("pick at least one event");
      const { from, to } = range.value();
      const request = {
        events: events.slice(0, 20),
        measure: measure.value,
        interval: interval.value,
        from: from.toISOString(),
        to: to.toISOString(),
      };
      const by = breakdown.value();
      if (by) request.breakdown = by;
      const reply = await api("/v1/analytics/trends", { method: "POST", body: request });
      show(result, reply);
    } catch (error) {
      result.replaceChildren(notice(error.message, "error"));
    }
  });
  body.append(form, result);
  if (boxes.length) form.requestSubmit();
}

function show(result, reply) {
  const labels = reply.buckets.map((b) => formatBucket(b, reply.interval));
  const series = reply.series.map((s) => ({ label: seriesLabel(s), values: s.values, total: s.total }));
  const chart = chartBox(`Trend of ${series.map((s) => s.label).join(", ")}`, "trend");
  result.replaceChildren(
    card(
      reply.measure === "people" ? "People per " + reply.interval : "Events per " + reply.interval,
      chart.box,
      table(
        [
          { label: "Series", value: (s) => s.label, header: true },
          { label: `Total (${reply.measure})`, value: (s) => formatNumber(s.total), num: true },
        ],
        series,
        { caption: "Totals over the range", empty: "No data in this range." },
      ),
      dataDetails(
        "Values per bucket",
        table(
          [
            { label: "Bucket (UTC)", value: (_, i) => labels[i], header: true },
            ...series.map((s) => ({ label: s.label, value: (_, i) => formatNumber(s.values[i]), num: true })),
          ],
          labels,
        ),
      ),
    ),
  );
  result.dataset.ready = "true";
  lineChart(chart.canvas, labels, series, { yTitle: reply.measure });
}

export default { id: "trends", title: "Trends", scope: ANALYTICS_READ, render };

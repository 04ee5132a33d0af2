// Funnel builder: ordered steps and a conversion window → people per step, conversion
// rates and median time to convert.

import { ANALYTICS_READ } from "../scopes.js";
import { api } from "../api.js";
import { barChart, chartBox } from "../charts.js";
import { dateRange, eventNames, nameOptions } from "../data.js";
import {
  card,
  field,
  formatDuration,
  formatNumber,
  formatPercent,
  h,
  notice,
  select,
  table,
} from "../ui.js";

const UNITS = { minutes: 60, hours: 3600, days: 86400 };
const MAX_STEPS = 20;

async function render(body) {
  const names = await eventNames();
  const steps = h("ol", { class: "steps", "aria-label": "Funnel steps" });

  function renumber() {
    [...steps.children].forEach((li, i) => {
      li.querySelector("label").textContent = `Step ${i + 1}`;
      li.querySelector("button").disabled = steps.children.length <= 2;
    });
    addButton.disabled = steps.children.length >= MAX_STEPS;
  }

  function addStep(value) {
    const choice = select(nameOptions(names), value, { class: "step-event" });
    const remove = h(
      "button",
      { type: "button", class: "secondary", "aria-label": "Remove this step" },
      "Remove",
    );
    const li = h("li", { class: "step" }, field("Step", choice), remove);
    remove.addEventListener("click", () => {
      li.remove();
      renumber();
    });
    steps.append(li);
    renumber();
    return choice;
  }

  const addButton = h("button", { type: "button", class: "secondary", id: "add-step" }, "Add step");
  addButton.addEventListener("click", () => addStep(names[0] || "").focus());
  const windowValue = h("input", { type: "number", min: "1", step: "1", value: "1", required: true });
  const windowUnit = select(Object.keys(UNITS), "days");
  const range = dateRange(30);
  const result = h("div", { class: "result", "aria-live": "polite" });

  addStep(names[0] || "");
  addStep(names[1] || names[0] || "");

  const form = h(
    "form",
    { class: "builder" },
    steps,
    h("div", { class: "toolbar" }, addButton),
    h(
      "div",
      { class: "toolbar" },
      field("Conversion window", windowValue),
      field("Unit", windowUnit),
      ...range.fields,
      h("button", { type: "submit", id: "run-funnel" }, "Build funnel"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      const chosen = [...steps.querySelectorAll("select")].map((s) => s.value);
      if (chosen.some((name) => !name)) throw new Error("choose an event for every step");
      const seconds = Math.round(Number(windowValue.value) * UNITS[windowUnit.value]);
      if (!(seconds >= 1)) throw new Error("the conversion window must be positive");
      const { from, to } = range.value();
      const reply = await api("/v1/analytics/funnels", {
        method: "POST",
        body: {
          steps: chosen.map((name) => ({ event: name })),
          conversionWindow: seconds,
          from: from.toISOString(),
          to: to.toISOString(),
        },
      });
      show(result, reply);
    } catch (error) {
      result.replaceChildren(notice(error.message, "error"));
    }
  });
  body.append(
    h("p", { class: "muted" }, "People who did the steps in order, each within the window of their first step."),
    form,
    result,
  );
}

function show(result, reply) {
  const chart = chartBox(
    `Funnel: ${reply.steps.map((s) => `${s.event} ${s.count}`).join(", ")}`,
    "funnel",
  );
  const labels = reply.steps.map((s) => `${s.step}. ${s.event}`);
  result.replaceChildren(
    card(
      "Funnel",
      chart.box,
      table(
        [
          { label: "Step", value: (s) => labels[s.step - 1], header: true },
          { label: "People", value: (s) => formatNumber(s.count), num: true },
          { label: "Conversion from step 1", value: (s) => formatPercent(s.conversionRate), num: true },
          { label: "From previous step", value: (s) => formatPercent(s.conversionFromPrevious), num: true },
          { label: "Median time to convert", value: (s) => formatDuration(s.medianSecondsToConvert), num: true },
        ],
        reply.steps,
        { caption: `Conversion window ${formatDuration(reply.conversionWindow)}` },
      ),
    ),
  );
  // Two-line axis labels: the step, then its conversion rate and median time.
  const axis = reply.steps.map((s, i) => [
    labels[i],
    i === 0
      ? formatPercent(s.conversionRate)
      : `${formatPercent(s.conversionRate)} · median ${formatDuration(s.medianSecondsToConvert)}`,
  ]);
  barChart(chart.canvas, axis, [{ label: "People", values: reply.steps.map((s) => s.count) }], {
    yTitle: "people",
    tooltip: (item) => {
      const step = reply.steps[item.dataIndex];
      return [
        `conversion ${formatPercent(step.conversionRate)}`,
        `median time ${formatDuration(step.medianSecondsToConvert)}`,
      ];
    },
  });
  result.dataset.ready = "true";
}

export default { id: "funnels", title: "Funnels", scope: ANALYTICS_READ, render };

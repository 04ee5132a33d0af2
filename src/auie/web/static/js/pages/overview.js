// Overview: events and active people per day, and the top events, over a chosen range.

import { ANALYTICS_READ } from "../scopes.js";
import { sql } from "../api.js";
import { barChart, chartBox, lineChart } from "../charts.js";
import { daysOf, eventsWithPeople, lastDays, rangeSelect } from "../data.js";
import { card, dataDetails, field, formatNumber, h, stat, table } from "../ui.js";

async function load(range) {
  const base = eventsWithPeople(range);
  const [totals, daily, top] = await Promise.all([
    sql(
      `${base} SELECT count(*) AS events, count(DISTINCT person) AS people, ` +
        "count(DISTINCT name_) AS names FROM ev",
    ),
    sql(
      `${base} SELECT strftime(date_trunc('day', timestamp), '%Y-%m-%d') AS day, ` +
        "count(*) AS events, count(DISTINCT person) AS people FROM ev GROUP BY 1 ORDER BY 1",
    ),
    sql(
      `${base} SELECT name_ AS name, count(*) AS events, count(DISTINCT person) AS people ` +
        "FROM ev WHERE name_ IS NOT NULL GROUP BY 1 ORDER BY events DESC, name LIMIT 10",
    ),
  ]);
  return { totals: totals[0], daily, top };
}

async function render(body, params, { navigate }) {
  const days = params.get("days") || "30";
  const range = lastDays(Number(days) || 30);
  const picker = rangeSelect(days);
  picker.addEventListener("change", () => navigate("overview", { days: picker.value }));
  body.append(
    h(
      "div",
      { class: "toolbar" },
      field("Range", picker),
      h(
        "p",
        {
          class: "muted range-note",
          dataset: { from: range.from.toISOString(), to: range.to.toISOString() },
        },
        `${range.from.toISOString().slice(0, 10)} to ${daysOf(range).at(-1)} (UTC)`,
      ),
    ),
  );
  const { totals, daily, top } = await load(range);

  body.append(
    h(
      "div",
      { class: "stats" },
      stat("Events", totals.events, "events"),
      stat("Active people", totals.people, "people"),
      stat("Event names", totals.names, "names"),
    ),
  );

  const byDay = new Map(daily.map((row) => [row.day, row]));
  const labels = daysOf(range);
  const eventsPerDay = labels.map((d) => byDay.get(d)?.events ?? 0);
  const peoplePerDay = labels.map((d) => byDay.get(d)?.people ?? 0);

  const eventsChart = chartBox("Events per day", "events-per-day");
  const dauChart = chartBox("Daily active people", "daily-active");
  const topChart = chartBox("Top events by count", "top-events");
  body.append(
    h(
      "div",
      { class: "grid-2" },
      card("Events over time", eventsChart.box),
      card("Daily active people", dauChart.box),
    ),
    card(
      "Top events",
      topChart.box,
      table(
        [
          { label: "Event", value: (r) => r.name, header: true },
          { label: "Events", value: (r) => formatNumber(r.events), num: true },
          { label: "People", value: (r) => formatNumber(r.people), num: true },
        ],
        top,
        { caption: "The ten most frequent events in the range", empty: "No events in this range." },
      ),
    ),
    dataDetails(
      "Daily numbers",
      table(
        [
          { label: "Day (UTC)", value: (r) => r.day, header: true },
          { label: "Events", value: (r) => formatNumber(r.events), num: true },
          { label: "Active people", value: (r) => formatNumber(r.people), num: true },
        ],
        daily,
        { empty: "No events in this range." },
      ),
    ),
  );
  lineChart(eventsChart.canvas, labels, [{ label: "Events", values: eventsPerDay }], {
    yTitle: "events",
  });
  lineChart(dauChart.canvas, labels, [{ label: "Active people", values: peoplePerDay }], {
    yTitle: "people",
  });
  barChart(
    topChart.canvas,
    top.map((r) => r.name),
    [{ label: "Events", values: top.map((r) => r.events) }],
    { horizontal: true },
  );
}

export default { id: "overview", title: "Overview", scope: ANALYTICS_READ, render };

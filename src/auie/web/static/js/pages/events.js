// Event explorer: the most recent events, filtered by name, type and person; click one to
// see it as JSON.

import { ANALYTICS_READ } from "../scopes.js";
import { literal, sql } from "../api.js";
import { eventNames } from "../data.js";
import { field, formatNumber, formatTime, h, select, showJson, table } from "../ui.js";

const TYPES = ["track", "page", "screen", "identify", "group", "alias"];
const JSON_COLUMNS = ["properties", "traits", "context", "integrations", "extra"];

/** A lake row as the event it was: JSON columns parsed, empty columns left out. */
export function eventDocument(row) {
  const doc = {};
  for (const [key, value] of Object.entries(row)) {
    if (value === null || value === undefined) continue;
    if (JSON_COLUMNS.includes(key) && typeof value === "string") {
      try {
        doc[key] = JSON.parse(value);
        continue;
      } catch {
        // keep the text
      }
    }
    doc[key] = value;
  }
  return doc;
}

function conditions({ name, type, user }) {
  const where = [];
  if (name) where.push(`(event = ${literal(name)} OR name = ${literal(name)})`);
  if (type) where.push(`type = ${literal(type)}`);
  if (user) where.push(`(user_id = ${literal(user)} OR anonymous_id = ${literal(user)})`);
  return where.length ? `WHERE ${where.join(" AND ")}` : "";
}

/** Lake rows (snake_case) and Segment-shaped events (camelCase) alike, for display. */
function pick(row, snake) {
  const camel = snake.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
  return row[snake] ?? row[camel] ?? null;
}

/** Events as rows people can click, or open with their "View" button. */
export function eventTable(rows, { caption, onPerson } = {}) {
  const title = (row) => {
    const name = pick(row, "event") || pick(row, "name");
    return `${row.type}${name ? `: ${name}` : ""}`;
  };
  const open = (row) => showJson(title(row), eventDocument(row));
  const person = (row) => {
    const userId = pick(row, "user_id");
    const id = userId || pick(row, "anonymous_id");
    if (!id || !onPerson) return id || "—";
    const type = userId ? "user_id" : "anonymous_id";
    return h(
      "a",
      {
        href: `#/profiles?${new URLSearchParams({ type, value: id })}`,
        onclick: (event) => event.stopPropagation(),
      },
      id,
    );
  };
  return table(
    [
      { label: "Time (UTC)", value: (r) => formatTime(pick(r, "timestamp")).replace(" UTC", "") },
      { label: "Type", value: (r) => r.type },
      { label: "Event / name", value: (r) => pick(r, "event") || pick(r, "name") || "—" },
      { label: "Person", value: person },
      {
        label: "JSON",
        value: (r) =>
          h(
            "button",
            {
              type: "button",
              class: "link",
              "aria-label": `Show event ${pick(r, "message_id")} as JSON`,
              onclick: (event) => {
                event.stopPropagation();
                open(r);
              },
            },
            "View",
          ),
      },
    ],
    rows,
    {
      caption,
      empty: "No events match.",
      rowAttrs: (r) => ({
        class: "clickable",
        dataset: { messageId: pick(r, "message_id") },
        onclick: () => open(r),
      }),
    },
  );
}

async function render(body, params, { navigate }) {
  const filters = {
    name: params.get("name") || "",
    type: params.get("type") || "",
    user: params.get("user") || "",
    limit: params.get("limit") || "100",
  };
  const names = await eventNames();
  const nameInput = h("input", { value: filters.name, list: "event-names", spellcheck: "false" });
  const typeSelect = select([["", "Any"], ...TYPES], filters.type);
  const userInput = h("input", { value: filters.user, spellcheck: "false" });
  const limitSelect = select(["50", "100", "500"], filters.limit);
  const form = h(
    "form",
    {
      class: "toolbar",
      onsubmit: (event) => {
        event.preventDefault();
        const next = {
          name: nameInput.value.trim(),
          type: typeSelect.value,
          user: userInput.value.trim(),
          limit: limitSelect.value,
        };
        navigate("events", Object.fromEntries(Object.entries(next).filter(([, v]) => v)));
      },
    },
    field("Event name", nameInput),
    h("datalist", { id: "event-names" }, names.map((n) => h("option", { value: n }))),
    field("Type", typeSelect),
    field("User or anonymous id", userInput),
    field("Show", limitSelect),
    h("button", { type: "submit" }, "Apply"),
  );
  body.append(form);

  const where = conditions(filters);
  const limit = Math.min(Number(filters.limit) || 100, 500);
  const [[{ n }], rows] = await Promise.all([
    sql(`SELECT count(*) AS n FROM events ${where}`),
    sql(`SELECT * FROM events ${where} ORDER BY timestamp DESC, message_id DESC LIMIT ${limit}`),
  ]);
  body.append(
    h(
      "p",
      { class: "muted", dataset: { matching: String(n) } },
      `${formatNumber(n)} events match; the ${formatNumber(rows.length)} most recent are shown. ` +
        "Select a row to see the event as JSON.",
    ),
    eventTable(rows, { caption: "Recent events, newest first", onPerson: true }),
  );
}

export default { id: "events", title: "Event explorer", scope: ANALYTICS_READ, render };

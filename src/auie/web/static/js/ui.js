// DOM helpers. Data only ever enters the page as text (textContent), never as markup.

/**
 * Build an element: h("p", {class: "muted"}, "text", child). Attributes starting with "on"
 * are listeners; `dataset` sets data-* attributes; false/null attributes are left out.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let ids = 0;
/** A unique element id with a readable prefix. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled form field: label + control (+ optional hint). */
export function field(labelText, control, hint) {
  if (!control.id) control.id = uid("f");
  const hintEl = hint ? h("small", { class: "muted", id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, labelText), control, hintEl);
}

export function select(options, value, attrs = {}) {
  const el = h("select", attrs);
  for (const option of options) {
    const [val, text] = Array.isArray(option) ? option : [option, option];
    el.append(h("option", { value: val, selected: String(val) === String(value) }, text));
  }
  return el;
}

/** A table; columns: [{label, value(row) -> text|Node, num: bool}]. */
export function table(columns, rows, { caption, rowAttrs, empty = "Nothing to show." } = {}) {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map((row, i) =>
          h(
            "tr",
            rowAttrs ? rowAttrs(row, i) : {},
            columns.map((c, j) => {
              const cell = c.value(row, i);
              const attrs = { class: c.num ? "num" : null };
              return j === 0 && c.header ? h("th", { scope: "row", ...attrs }, cell) : h("td", attrs, cell);
            }),
          ),
        ),
      ),
    ),
  );
}

/** Key/value rows of an object; nested objects shown as JSON. */
export function kvTable(object, caption) {
  const rows = Object.entries(object || {}).sort(([a], [b]) => a.localeCompare(b));
  return table(
    [
      { label: "Name", value: ([k]) => k, header: true },
      {
        label: "Value",
        value: ([, v]) =>
          v !== null && typeof v === "object" ? h("code", {}, JSON.stringify(v)) : formatValue(v),
      },
    ],
    rows,
    { caption, empty: "None." },
  );
}

export function formatValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return formatNumber(value);
  return String(value);
}

const numberFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
export function formatNumber(value) {
  return value === null || value === undefined ? "—" : numberFormat.format(value);
}

export function formatPercent(rate, digits = 1) {
  return rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(digits)}%`;
}

/** Seconds as "42 s", "3.5 min", "2.1 h", "1.5 d". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 36 * 3600) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

/** An ISO time as "2026-05-01 14:03:22 UTC" (times are shown in UTC throughout). */
export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

export function formatBucket(iso, interval) {
  const text = new Date(iso).toISOString();
  return interval === "hour" ? `${text.slice(0, 13).replace("T", " ")}:00` : text.slice(0, 10);
}

/** Midnight UTC of today + `days` as a Date. */
export function utcDay(days = 0) {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + days));
}

export function isoDate(date) {
  return date.toISOString().slice(0, 10);
}

/** A small statistic: label and value, for overview cards. */
export function stat(label, value, key) {
  return h(
    "div",
    { class: "stat" },
    h("span", { class: "stat-label" }, label),
    h("span", { class: "stat-value", dataset: { stat: key, value: String(value) } }, formatNumber(value)),
  );
}

export function notice(text, kind = "info") {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null }, text);
}

/** Show a JSON document in the shared dialog. */
export function showJson(title, value) {
  const dialog = document.getElementById("json-dialog");
  document.getElementById("json-dialog-title").textContent = title;
  document.getElementById("json-dialog-body").textContent = JSON.stringify(value, null, 2);
  if (!dialog.open) dialog.showModal();
}

/** A collapsible data table that mirrors a chart for screen readers and copying. */
export function dataDetails(summary, content) {
  return h("details", { class: "data-details" }, h("summary", {}, summary), content);
}

/** A section card with a heading; `heading` is its title or {title, key} (data-card=key). */
export function card(heading, ...children) {
  const { title, key } = typeof heading === "string" ? { title: heading } : heading;
  const headingId = uid("card");
  return h(
    "section",
    { class: "card", "aria-labelledby": headingId, dataset: key ? { card: key } : null },
    h("h2", { id: headingId }, title),
    ...children,
  );
}

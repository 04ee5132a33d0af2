// SQL over the lake (POST /v1/sql) shared by the pages, and the range controls.
//
// The definitions follow docs/analytics.md: an event's *name* is `event` for track events
// and the type otherwise; its *person* is the current profile of its user id, else of its
// anonymous id (the lake's `identities` table), else the raw id. (The analyses key a
// pseudonymised event `pseudo:<hash>`; here it is `anon:<hash>`: the same grouping, so the
// same counts, and the hash columns that tell it apart are not in a pseudonymous view.)

import { literal, sql } from "./api.js";
import { field, h, isoDate, select, utcDay } from "./ui.js";

export const EVENT_NAME = "CASE WHEN e.type = 'track' THEN e.event ELSE e.type END";

const IDS = `_ids AS (
  SELECT id_type, id_value, profile_id FROM identities
  WHERE id_type IN ('user_id', 'anonymous_id')
  QUALIFY row_number() OVER (
    PARTITION BY id_type, id_value ORDER BY changed_at DESC, profile_id DESC) = 1
)`;
const PERSON =
  "coalesce(u.profile_id, a.profile_id, 'anon:' || e.anonymous_id, 'user:' || e.user_id)";
const PERSON_JOINS =
  "LEFT JOIN _ids u ON u.id_type = 'user_id' AND u.id_value = e.user_id " +
  "LEFT JOIN _ids a ON a.id_type = 'anonymous_id' AND a.id_value = e.anonymous_id";

export function timeCondition(range, column = "e.timestamp") {
  return (
    `${column} >= TIMESTAMPTZ ${literal(range.from.toISOString())} AND ` +
    `${column} < TIMESTAMPTZ ${literal(range.to.toISOString())}`
  );
}

/** `WITH ... ev AS (...)`: the range's events with `name` and `person` columns. */
export function eventsWithPeople(range) {
  return (
    `WITH ${IDS}, ev AS (SELECT e.*, ${EVENT_NAME} AS name_, ${PERSON} AS person ` +
    `FROM events e ${PERSON_JOINS} WHERE ${timeCondition(range)})`
  );
}

let namesCache = null;
/** Event names seen in the last 400 days, most frequent first (cached for a minute). */
export async function eventNames() {
  if (namesCache && namesCache.at > Date.now() - 60_000) return namesCache.names;
  const range = { from: utcDay(-400), to: utcDay(1) };
  const rows = await sql(
    `SELECT ${EVENT_NAME} AS name, count(*) AS n FROM events e WHERE ${timeCondition(range)} ` +
      "GROUP BY 1 HAVING name IS NOT NULL ORDER BY n DESC, name LIMIT 500",
  );
  namesCache = { at: Date.now(), names: rows.map((r) => r.name) };
  return namesCache.names;
}

/** Event names for a select, with a placeholder when there are none yet. */
export function nameOptions(names) {
  return names.length ? names : [["", "(no events yet)"]];
}

/** A from/to pair of date inputs (UTC days; `to` inclusive on screen). */
export function dateRange(days = 30) {
  const from = h("input", { type: "date", value: isoDate(utcDay(1 - days)), required: true });
  const to = h("input", { type: "date", value: isoDate(utcDay(0)), required: true });
  return {
    fields: [field("From (UTC)", from), field("To (UTC, inclusive)", to)],
    /** {from, to} as Dates, `to` exclusive. */
    value() {
      const start = new Date(`${from.value}T00:00:00Z`);
      const end = new Date(`${to.value}T00:00:00Z`);
      end.setUTCDate(end.getUTCDate() + 1);
      if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) {
        throw new Error("enter both dates");
      }
      if (end <= start) throw new Error("'To' must not be before 'From'");
      return { from: start, to: end };
    },
  };
}

/** The last `days` whole UTC days up to and including today. */
export function lastDays(days) {
  return { from: utcDay(1 - days), to: utcDay(1) };
}

export function rangeSelect(value) {
  return select(
    [
      ["7", "Last 7 days"],
      ["30", "Last 30 days"],
      ["90", "Last 90 days"],
      ["365", "Last 365 days"],
    ],
    value,
  );
}

/** Every UTC day from range.from (inclusive) to range.to (exclusive), as YYYY-MM-DD. */
export function daysOf(range) {
  const days = [];
  for (let d = new Date(range.from); d < range.to; d.setUTCDate(d.getUTCDate() + 1)) {
    days.push(isoDate(d));
  }
  return days;
}

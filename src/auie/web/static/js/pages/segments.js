// Segments: the saved segments with their member counts, and one segment's members.

import { ANALYTICS_READ } from "../scopes.js";
import { api, literal, sql } from "../api.js";
import { card, formatNumber, formatTime, h, notice, table } from "../ui.js";

const PAGE = 50;

function membersPath(id, limit, cursor) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set("cursor", cursor);
  return `/v1/analytics/segments/${encodeURIComponent(id)}/members?${query}`;
}

/** A user id (else anonymous id, else email) of each profile, from the lake's identities. */
async function identifiers(profileIds) {
  if (!profileIds.length) return new Map();
  const ids = profileIds.map((id) => literal(id)).join(", ");
  // The current profile of an identifier is its latest identities row.
  const rows = await sql(
    "SELECT * FROM (SELECT profile_id, id_type, id_value FROM identities " +
      "WHERE id_type IN ('user_id', 'anonymous_id', 'email') " +
      "QUALIFY row_number() OVER (PARTITION BY id_type, id_value " +
      `ORDER BY changed_at DESC, profile_id DESC) = 1) WHERE profile_id IN (${ids})`,
  );
  const rank = { user_id: 0, email: 1, anonymous_id: 2 };
  const best = new Map();
  for (const row of rows) {
    const seen = best.get(row.profile_id);
    if (!seen || rank[row.id_type] < rank[seen.id_type] ||
        (rank[row.id_type] === rank[seen.id_type] && row.id_value < seen.id_value)) {
      best.set(row.profile_id, row);
    }
  }
  return best;
}

async function render(body, params, { navigate }) {
  const segments = await api("/v1/analytics/segments");
  const counts = await Promise.all(
    segments.map((s) => api(membersPath(s.id, 1)).then((m) => m.count)),
  );
  const selected = params.get("id");
  body.append(
    card(
      { title: "Saved segments", key: "segments" },
      table(
        [
          { label: "Name", value: (s) => s.name, header: true },
          { label: "Description", value: (s) => s.description || "—" },
          {
            label: "Members",
            value: (s, i) => h("span", { dataset: { segmentCount: s.name } }, formatNumber(counts[i])),
            num: true,
          },
          { label: "Updated (UTC)", value: (s) => formatTime(s.updatedAt).replace(" UTC", "") },
          {
            label: "",
            value: (s) =>
              h(
                "a",
                { href: `#/segments?id=${encodeURIComponent(s.id)}`, "aria-label": `Members of ${s.name}` },
                "Members",
              ),
          },
        ],
        segments,
        {
          empty: "No segments yet. Create them with POST /v1/analytics/segments.",
          rowAttrs: (s) => ({ class: s.id === selected ? "selected" : null }),
        },
      ),
    ),
  );
  if (!selected) return;
  const segment = segments.find((s) => s.id === selected);
  if (!segment) {
    body.append(notice("No such segment.", "warning"));
    return;
  }
  const cursor = params.get("cursor");
  const page = await api(membersPath(segment.id, PAGE, cursor));
  const named = await identifiers(page.members.map((m) => m.profileId));
  const person = (m) => {
    const id = named.get(m.profileId);
    if (!id) return "—";
    return h(
      "a",
      { href: `#/profiles?${new URLSearchParams({ type: id.id_type, value: id.id_value })}` },
      `${id.id_type}: ${id.id_value}`,
    );
  };
  body.append(
    card(
      { title: `Members of ${segment.name}`, key: "members" },
      h("p", { class: "muted", dataset: { members: String(page.count) } }, `${formatNumber(page.count)} members.`),
      h("details", {}, h("summary", {}, "Definition"), h("pre", {}, JSON.stringify(segment.definition, null, 2))),
      table(
        [
          { label: "Profile", value: (m) => h("code", {}, m.profileId), header: true },
          { label: "Identifier", value: person },
        ],
        page.members,
        { caption: "Members by profile id", empty: "No members." },
      ),
      page.nextCursor
        ? h(
            "button",
            {
              type: "button",
              class: "secondary",
              onclick: () => navigate("segments", { id: segment.id, cursor: page.nextCursor }),
            },
            "Next page",
          )
        : null,
    ),
  );
}

export default { id: "segments", title: "Segments", scope: ANALYTICS_READ, render };

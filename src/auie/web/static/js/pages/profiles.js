// Profile lookup: by user id, anonymous id or email → identities, traits, computed traits,
// merges and recent events.

import { PROFILES_READ } from "../scopes.js";
import { ApiError, api } from "../api.js";
import { card, field, formatTime, h, kvTable, notice, select, table } from "../ui.js";
import { eventTable } from "./events.js";

const TYPES = [
  ["user_id", "User id"],
  ["anonymous_id", "Anonymous id"],
  ["email", "Email"],
];

function profilePath(type, value) {
  return `/v1/profiles/${encodeURIComponent(type)}/${encodeURIComponent(value)}`;
}

async function render(body, params, { navigate }) {
  const type = params.get("type") || "user_id";
  const value = params.get("value") || "";
  const typeSelect = select(TYPES, type);
  const valueInput = h("input", { value, required: true, spellcheck: "false", autocapitalize: "off" });
  const form = h(
    "form",
    {
      class: "toolbar",
      role: "search",
      onsubmit: (event) => {
        event.preventDefault();
        const text = valueInput.value.trim();
        if (text) navigate("profiles", { type: typeSelect.value, value: text });
      },
    },
    field("Identifier type", typeSelect),
    field("Value", valueInput),
    h("button", { type: "submit" }, "Look up"),
  );
  body.append(form);
  if (!value) {
    body.append(h("p", { class: "muted" }, "Enter a user id, anonymous id or email."));
    valueInput.focus();
    return;
  }

  let profile;
  let events;
  try {
    [profile, events] = await Promise.all([
      api(profilePath(type, value)),
      api(`${profilePath(type, value)}/events?limit=50`),
    ]);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      body.append(notice(`No profile has ${type} “${value}”.`, "warning"));
      return;
    }
    throw error;
  }
  const computed = { ...profile.computedTraits };
  const counts = computed.eventCounts || {};
  delete computed.eventCounts;

  body.append(
    h(
      "p",
      { class: "profile-id" },
      "Profile ",
      h("code", { dataset: { profileId: profile.profileId } }, profile.profileId),
    ),
    h(
      "div",
      { class: "grid-2" },
      card(
        { title: "Identities", key: "identities" },
        table(
          [
            { label: "Type", value: (i) => i.type, header: true },
            { label: "Value", value: (i) => i.value },
          ],
          profile.identities,
          { empty: "None." },
        ),
      ),
      card({ title: "Traits", key: "traits" }, kvTable(profile.traits)),
      card({ title: "Computed traits", key: "computed" }, kvTable(computed)),
      card(
        { title: "Event counts", key: "counts" },
        table(
          [
            { label: "Event", value: ([k]) => k, header: true },
            { label: "Count", value: ([, v]) => String(v), num: true },
          ],
          Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])),
          { empty: "None." },
        ),
      ),
    ),
    card(
      { title: "Merges", key: "merges" },
      table(
        [
          { label: "Time (UTC)", value: (m) => formatTime(m.timestamp) },
          { label: "Kind", value: (m) => m.kind },
          { label: "From profile", value: (m) => h("code", {}, m.fromProfileId) },
          { label: "Into profile", value: (m) => h("code", {}, m.intoProfileId) },
          { label: "Message id", value: (m) => h("code", {}, m.messageId) },
        ],
        profile.merges,
        { empty: "No merges." },
      ),
    ),
    card(
      { title: "Recent events", key: "events" },
      eventTable(events.events, { caption: "The person's 50 most recent events, newest first" }),
    ),
  );
}

export default { id: "profiles", title: "Profiles", scope: PROFILES_READ, render };

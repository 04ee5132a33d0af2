"""Consent per purpose: ``analytics``, ``personalization``, ``marketing``.

Consent arrives with events (Segment's ``context.consent.categoryPreferences``, whose
consent-manager category names map to purposes through ``privacy.consent_categories``)
and from the API (``PUT /v1/privacy/consent/{idType}/{idValue}``). A purpose is granted
only if every category mapped to it that the event states is granted. Like traits, the
current value of each purpose is the latest statement by event time, so order never
matters; every statement is kept as history.

The one place consent is enforced (see docs/privacy.md):

* no ``analytics``: the event's personal fields are not written to the lake
  (``privacy.without_analytics_consent``: ``pseudonymise`` keeps the event with
  unlinked hashed ids and without its personal fields, see
  :mod:`auie.process.privacy_gate`; ``drop`` keeps it out of the lake), and the profile's
  lake snapshots withhold its traits;
* no ``personalization``: the decision service serves the baseline and does not learn;
* no ``marketing`` (CCPA "do not sell or share"): exports to marketing destinations skip
  the person (none ship today; the flag is on the profile).

Without any statement, a purpose is granted unless ``privacy.require_explicit_consent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PURPOSES = ("analytics", "personalization", "marketing")


def from_event(event: Mapping[str, Any], categories: Mapping[str, str]) -> dict[str, bool]:
    """The purposes an event states consent for (empty when it states none)."""
    context = event.get("context")
    consent = context.get("consent") if isinstance(context, Mapping) else None
    preferences = consent.get("categoryPreferences") if isinstance(consent, Mapping) else None
    if not isinstance(preferences, Mapping):
        return {}
    stated: dict[str, bool] = {}
    for category, granted in preferences.items():
        purpose = categories.get(str(category)) or categories.get(str(category).lower())
        if purpose is None or not isinstance(granted, bool):
            continue
        stated[purpose] = stated.get(purpose, True) and granted
    return stated


def allowed(current: Mapping[str, Any], purpose: str, *, require_explicit: bool) -> bool:
    """Whether the person's current consent (purpose → bool) allows ``purpose``."""
    value = current.get(purpose)
    if value is None:
        return not require_explicit
    return bool(value)

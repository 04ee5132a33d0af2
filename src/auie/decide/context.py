"""What the decision service knows about the person: profile traits, computed traits,
segments and the ``user_features`` mart, joined into the context under ``user``.

Configured PII fields (``privacy.pii_fields``) of the traits, at any depth, and declared
computed traits over a PII property (``privacy.pii_properties``), are never joined: the
context is logged with the decision (event log, lake ``decisions`` table, training mart),
and the same context must feed the policies online and offline, so they are left out of
both.

Segments and the mart row are queries over the lake (milliseconds to seconds): they are
loaded by a background thread into the person's cached entry, never while a decision waits,
so a person's first decisions of a cache period may be made without them."""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from auie.decide.config import JoinSpec
from auie.errors import AuieError, NotFound
from auie.privacy import consent, fields
from auie.profiles.service import ProfileService

logger = logging.getLogger(__name__)

SegmentsOf = Callable[[str, str], list[str]]
FeaturesOf = Callable[[str, str], Mapping[str, Any] | None]
#: A cached person is reloaded after 15 to 30 s: the spread keeps the people first seen
#: together (a burst of traffic, a restart) from all expiring in the same second, which
#: would put thousands of profile reads on the event loop at once.
_TTL_SECONDS = 30.0
_TTL_MIN_SHARE = 0.5
_CACHE_LIMIT = 50_000
#: Segment and mart loads waiting for the background thread; beyond, new ones are skipped
#: (and asked again by a later decision).
_MAX_PENDING_LOADS = 1_000
#: What a consent check reads: the profile (never segments or the mart).
_CONSENT_ONLY = JoinSpec(segments=False, user_features=False)


def _pick(values: Mapping[str, Any], wanted: bool | list[str]) -> dict[str, Any]:
    if wanted is True:
        return dict(values)
    if wanted is False:
        return {}
    return {k: values[k] for k in wanted if k in values}


def _expiry(now: float) -> float:
    return now + _TTL_SECONDS * random.uniform(_TTL_MIN_SHARE, 1.0)  # noqa: S311 (not secret)


class PersonContext:
    """Looks the person up (cached for a few seconds) and builds the ``user`` context."""

    def __init__(
        self,
        profiles: ProfileService,
        *,
        segments_of: SegmentsOf | None = None,
        features_of: FeaturesOf | None = None,
        pii_rules: fields.PiiRules | None = None,
    ) -> None:
        self.profiles = profiles
        self.segments_of = segments_of
        self.features_of = features_of
        #: Which trait and property names are PII (none without rules).
        self.pii_rules = pii_rules or fields.PiiRules((), ())
        #: Declared computed traits over a PII property: never joined either.
        self.pii_computed = self.pii_rules.computed_over(profiles.folder.computed)
        self._cache: dict[tuple[str, str, str], tuple[float, str | None, dict[str, Any]]] = {}
        self._loads: queue.SimpleQueue[tuple[str, str, dict[str, Any], str, Any]] = (
            queue.SimpleQueue()
        )
        self._loading: set[tuple[int, str]] = set()  # (id of the entry, source name)
        self._loader: threading.Thread | None = None

    def lookup(
        self, workspace: str, user_id: str | None, anonymous_id: str | None, join: JoinSpec
    ) -> tuple[str | None, dict[str, Any]]:
        """(profile id, context under ``user``) — (None, {}) for someone never seen."""
        id_type, value = ("user_id", user_id) if user_id else ("anonymous_id", anonymous_id)
        if not value:
            return None, {}
        key = (workspace, id_type, value)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is None or now > cached[0]:  # cached[0]: when the entry expires
            cached = (_expiry(now), *self._load(workspace, id_type, value))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = cached
        _, profile_id, person = cached
        if profile_id is not None:
            self._join_sources(workspace, profile_id, person, join)
        return profile_id, self._select(person, join)

    def _load(self, workspace: str, id_type: str, value: str) -> tuple[str | None, dict[str, Any]]:
        try:
            profile = self.profiles.profile(workspace, id_type, value)
        except NotFound:
            return None, {}
        person: dict[str, Any] = {
            "consent": dict(profile.consent.get("current", {})),
            "traits": self.pii_rules.strip("traits", profile.traits),
            "computedTraits": {
                k: v
                for k, v in profile.computed_traits.items()
                if k not in ("firstSeen", "lastSeen", "lastPage") and k not in self.pii_computed
            },
        }
        return profile.profile_id, person

    def _join_sources(
        self, workspace: str, profile_id: str, person: dict[str, Any], join: JoinSpec
    ) -> None:
        """Asks the background thread for the person's segments and ``user_features`` row
        that a decision point joins and the cached entry lacks; each is loaded once per
        entry (a failure too: it is retried when the entry expires)."""
        for name, source, wanted in (
            ("segments", self.segments_of, join.segments),
            ("features", self.features_of, join.user_features),
        ):
            if not wanted or source is None or name in person:
                continue
            loading = (id(person), name)
            if loading in self._loading or len(self._loading) >= _MAX_PENDING_LOADS:
                continue
            self._loading.add(loading)
            self._loads.put((workspace, profile_id, person, name, source))
            if self._loader is None:
                self._loader = threading.Thread(
                    target=self._load_sources, name="auie-person-join", daemon=True
                )
                self._loader.start()

    def _load_sources(self) -> None:
        """The background thread: runs the queued lake reads and stores each result in
        its cached entry (one dict item assignment, which the serving thread sees whole)."""
        while True:
            workspace, profile_id, person, name, source = self._loads.get()
            try:
                person[name] = source(workspace, profile_id)
            except AuieError as exc:  # e.g. no mart built yet
                person[name] = None
                logger.debug("no %s for %s: %s", name, profile_id, exc.message)
            except Exception:  # the thread must live on: log it, serve without
                person[name] = None
                logger.exception("reading the %s of %s failed", name, profile_id)
            finally:
                self._loading.discard((id(person), name))

    def allows(
        self,
        workspace: str,
        user_id: str | None,
        anonymous_id: str | None,
        purpose: str = "personalization",
        *,
        require_explicit: bool = False,
    ) -> bool:
        """Whether the person's consent allows ``purpose`` (cached like the context)."""
        id_type, value = ("user_id", user_id) if user_id else ("anonymous_id", anonymous_id)
        if not value:
            return not require_explicit
        cached = self._cache.get((workspace, id_type, value))
        if cached is None or time.monotonic() > cached[0]:
            self.lookup(workspace, user_id, anonymous_id, _CONSENT_ONLY)
            cached = self._cache[(workspace, id_type, value)]
        current = cached[2].get("consent", {})
        return consent.allowed(current, purpose, require_explicit=require_explicit)

    @staticmethod
    def _select(person: Mapping[str, Any], join: JoinSpec) -> dict[str, Any]:
        selected: dict[str, Any] = {}
        if person.get("traits"):
            selected["traits"] = _pick(person["traits"], join.traits)
        if person.get("computedTraits"):
            selected["computed"] = _pick(person["computedTraits"], join.computed_traits)
        if join.segments and person.get("segments"):
            selected["segments"] = list(person["segments"])
        if join.user_features and person.get("features"):
            selected["features"] = dict(person["features"])
        return {k: v for k, v in selected.items() if v}

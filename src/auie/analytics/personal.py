"""Which targets of an analysis name personal data: a token needs ``pii:read`` to filter or
break down by them, as it does to read them in ``POST /v1/sql``.

Without ``pii:read``, SQL shows identifiers as keyed hashes and no IP at all, and a caller
cannot hash a guess (see :mod:`auie.analytics.pseudonymous`). Trends, funnels, retention and
segments answer with aggregates and profile ids, but a breakdown by ``user_id`` would list
the raw ids, and a filter ``user_id eq "ada"`` (or a trait ``email eq ...``) would tell
whether a guessed person did something. So these targets are refused (403
``pii_read_required``) for such a token:

* the ``events`` columns of :data:`PERSONAL_FIELDS`;
* traits that ``privacy.pii_fields`` names, properties that ``privacy.pii_properties``
  names (the same rules the processor encrypts by and the SQL views strip by);
* computed traits declared over such a property.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from auie.analytics.models import Target
from auie.privacy.fields import PiiRules
from auie.profiles.state import ComputedTrait

#: ``events`` columns that hold a raw identifier or a personal value.
PERSONAL_FIELDS = frozenset({"user_id", "anonymous_id", "group_id", "previous_id", "context_ip"})


class PersonalTargets:
    """See the module's docstring."""

    def __init__(self, rules: PiiRules, computed: Iterable[ComputedTrait]) -> None:
        self.rules = rules
        self.computed = rules.computed_over(computed)

    def is_personal(self, target: Target) -> bool:
        kind, name = target.target()
        if kind == "field":
            return name in PERSONAL_FIELDS
        if kind == "trait":
            return self.rules.is_pii(name)
        if kind == "property":
            return self.rules.is_pii_property(name)
        return name.split(".", 1)[0] in self.computed

    def is_personal_condition(self, node: Mapping[str, Any]) -> bool:
        """Whether a condition of a stored segment definition (JSON, camelCase keys) is on
        personal data; False for anything that is not one condition's target."""
        kinds = [k for k in ("property", "trait", "computedTrait", "field") if k in node]
        if len(kinds) != 1:
            return False
        try:
            target = Target.model_validate({kinds[0]: node[kinds[0]]})
        except ValueError:
            return False  # not a condition after all
        return self.is_personal(target)

    def named(self, *parts: Any) -> list[str]:
        """The personal targets anywhere in ``parts`` (requests, segment definitions), as
        ``"<kind> <name>"``, each once, in order of appearance."""
        found: dict[str, None] = {}
        for target in _targets(parts):
            if self.is_personal(target):
                kind, name = target.target()
                found[f"{kind} {name!r}"] = None
        return list(found)


#: What a saved segment shows, without ``pii:read``, in place of a condition's value on
#: personal data.
HIDDEN = "[needs pii:read]"


def hide_personal(definition: Any, personal: PersonalTargets) -> Any:
    """A stored segment definition (JSON) with the values of its conditions on personal
    data replaced by :data:`HIDDEN`, at any depth: a token without ``pii:read`` may list
    and read segments, not the e-mail address or user ids one names."""
    if isinstance(definition, list):
        return [hide_personal(item, personal) for item in definition]
    if not isinstance(definition, dict):
        return definition
    out = {key: hide_personal(inner, personal) for key, inner in definition.items()}
    if "value" in definition and personal.is_personal_condition(definition):
        value = definition["value"]
        out["value"] = [HIDDEN] * len(value) if isinstance(value, list) else HIDDEN
    return out


def _targets(value: Any) -> Iterator[Target]:
    if isinstance(value, Target):
        yield value
    elif isinstance(value, BaseModel):
        for item in value.__dict__.values():
            yield from _targets(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _targets(item)

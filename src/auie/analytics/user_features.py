"""One person's row of the ``user_features`` mart, for the decision service.

The transformation builds the mart (docs/transform.md); :func:`features_of` reads one
person's row through the query engine, so a decision point with ``join.userFeatures`` gets
``user.features`` in its context.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auie.runtime import Runtime

MART = "user_features"
#: Not features: the key, and the mart's reference time (the same for every person).
_SKIPPED = frozenset({"person_id", "as_of"})


def features_of(runtime: Runtime, workspace: str, profile_id: str) -> dict[str, Any] | None:
    """The person's ``user_features`` row as ``{column: value}`` — numbers (decimals as
    floats), strings and booleans only (``person_id``, ``as_of`` and the timestamps are left
    out: ``recency_days`` carries them) — or None when the mart has no row for them. Raises
    ``NotFound`` (``unknown_table``) before the transformation has built the mart."""
    result = runtime.analytics.query(
        workspace,
        f'SELECT * FROM "{MART}" WHERE person_id = $person LIMIT 1',
        {"person": profile_id},
    )
    if not result.rows:
        return None
    features: dict[str, Any] = {}
    for column, value in zip(result.columns, result.rows[0], strict=True):
        if column in _SKIPPED:
            continue
        if isinstance(value, Decimal):
            features[column] = float(value)
        elif isinstance(value, bool | int | float | str):
            features[column] = value
    return features

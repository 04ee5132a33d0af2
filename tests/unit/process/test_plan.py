"""Compiling and checking tracking plans (``auie.process.plan``), on docs/process.md's
example plan."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from auie.process.plan import TrackingPlan

DOC = Path(__file__).resolve().parents[3] / "docs" / "process.md"


def docs_plan() -> dict[str, Any]:
    """The example plan under "Tracking plans" in docs/process.md."""
    section = DOC.read_text().split("## Tracking plans", 1)[1]
    match = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert match is not None, "docs/process.md has no example plan"
    plan: dict[str, Any] = json.loads(match.group(1))
    return plan


def identify(email: str) -> dict[str, Any]:
    return {"type": "identify", "userId": "u-1", "traits": {"email": email}}


def test_the_docs_example_checks_the_email_format() -> None:
    plan = TrackingPlan(1, docs_plan())
    assert plan.check(identify("ada@example.com")) is None
    verdict = plan.check(identify("not-an-email"))
    assert verdict is not None
    assert (verdict.key, verdict.mode, verdict.blocked) == ("identify", "flag", False)
    assert verdict.problems == ('email: "not-an-email" is not a "email"',)


def test_formats_the_validator_does_not_know_pass() -> None:
    plan = TrackingPlan(
        1,
        {"identify": {"mode": "block", "schema": {"properties": {"x": {"format": "shoe-size"}}}}},
    )
    assert plan.check({"type": "identify", "traits": {"x": "44"}}) is None

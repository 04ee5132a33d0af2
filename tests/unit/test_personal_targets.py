"""Which analysis targets name personal data (and so need pii:read): the processor's PII
rules for traits and properties, identifier and IP columns, computed traits over a PII
property, anywhere in a request or segment definition."""

from __future__ import annotations

from auie.analytics.models import FunnelsIn, SegmentIn, TrendsIn
from auie.analytics.personal import PersonalTargets
from auie.privacy.fields import PiiRules
from auie.profiles.state import ComputedTrait

RANGE = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}
PERSONAL = PersonalTargets(
    PiiRules(["email", "phone"], ["email", "card_number"]),
    [
        ComputedTrait("lastEmailUsed", "last", "Signed Up", "email"),
        ComputedTrait("orders", "count", "Order Completed"),
        ComputedTrait("spent", "sum", "Order Completed", "total"),
    ],
)


def test_each_kind_of_target() -> None:
    trends = TrendsIn.model_validate(
        {
            "events": ["page"],
            **RANGE,
            "filters": [
                {"field": "user_id", "op": "is_set"},
                {"field": "browser_name", "op": "eq", "value": "Chrome"},
                {"trait": "EMAIL", "op": "is_set"},
                {"trait": "plan", "op": "eq", "value": "pro"},
                {"property": "card_number", "op": "is_set"},
                {"property": "phone", "op": "is_set"},  # a trait name, not a property one
                {"computedTrait": "lastEmailUsed", "op": "is_set"},
                {"computedTrait": "spent", "op": "gt", "value": 3},
                {"computedTrait": "eventCounts.page", "op": "gt", "value": 3},
            ],
            "breakdown": {"field": "context_ip"},
        }
    )
    assert PERSONAL.named(trends) == [
        "field 'user_id'",
        "trait 'EMAIL'",
        "property 'card_number'",
        "computedTrait 'lastEmailUsed'",
        "field 'context_ip'",
    ]


def test_nested_requests_and_definitions() -> None:
    funnel = FunnelsIn.model_validate(
        {
            **RANGE,
            "steps": [
                {"event": "a"},
                {"event": "b", "filters": [{"field": "anonymous_id", "op": "is_set"}]},
            ],
        }
    )
    assert PERSONAL.named(funnel) == ["field 'anonymous_id'"]
    segment = SegmentIn.model_validate(
        {
            "name": "s",
            "definition": {
                "or": [
                    {"and": [{"trait": "plan", "op": "eq", "value": "pro"}]},
                    {
                        "event": "x",
                        "atLeast": 1,
                        "inLastDays": 3,
                        "filters": [{"property": "Email", "op": "is_set"}],
                    },
                ]
            },
        }
    )
    assert PERSONAL.named(segment) == ["property 'Email'"]
    assert PERSONAL.named(segment.definition, funnel) == [
        "property 'Email'",
        "field 'anonymous_id'",
    ]
    plain = TrendsIn.model_validate({"events": ["page"], **RANGE})
    assert PERSONAL.named(plain) == []

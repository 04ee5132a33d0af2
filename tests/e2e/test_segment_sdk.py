"""The real Segment Python SDK against a real ``auie serve``; the log read with the real CLI.

Every call type goes through the SDK's own queue, consumer thread, batching and HTTP code
(plain and gzip), and must come out of ``auie log tail --json`` with the messageId the SDK
generated, its fields, and timestamps consistent with clock-skew correction.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from segment.analytics.client import Client
from segment.analytics.request import APIError, DatetimeSerializer
from segment.analytics.version import VERSION

from helpers import AUIE, Server

pytestmark = pytest.mark.slow

SKEW_TOLERANCE = timedelta(milliseconds=1)


def auie_log(data_dir: Path, *args: str) -> str:
    """Run ``auie log ARGS --data-dir DATA_DIR --json``; its standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUIE_")}
    done = subprocess.run(
        [AUIE, "log", *args, "--data-dir", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=data_dir.parent,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def log_tail(data_dir: Path) -> list[dict[str, Any]]:
    """Every stored event, read by ``auie log tail``."""
    return [json.loads(line) for line in auie_log(data_dir, "tail").splitlines() if line]


def log_records(data_dir: Path) -> dict[str, int]:
    """topic → number of records, read by ``auie log stats``."""
    return {t["topic"]: t["records"] for t in json.loads(auie_log(data_dir, "stats"))}


@dataclass
class Sdk:
    """A Segment client plus what its on_error callback saw."""

    client: Client
    errors: list[tuple[Exception, list[dict[str, Any]]]]


def make_sdk(server: Server, write_key: str | None = None, **options: Any) -> Sdk:
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    client = Client(
        write_key or server.credentials["writeKey"],
        host=server.url,
        on_error=lambda error, batch: errors.append((error, batch)),
        upload_interval=0.05,
        max_retries=2,
        timeout=10,
        **options,
    )
    return Sdk(client, errors)


def wire(message: dict[str, Any]) -> dict[str, Any]:
    """A queued SDK message as it goes on the wire (datetimes become ISO strings)."""
    return json.loads(json.dumps(message, cls=DatetimeSerializer))


def when(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def send_every_call_type(client: Client) -> dict[str, dict[str, Any]]:
    """One call of each type, with everything the SDK lets a caller set; name → message."""
    fixed = datetime(2024, 5, 1, 12, 30, 15, 123_456, tzinfo=timezone(timedelta(hours=2)))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    calls = {
        "track": lambda: client.track(
            user_id="user-1",
            event="Order Completed",
            properties={
                "revenue": Decimal("42.50"),
                "currency": "EUR",
                "products": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
                "coupon": None,
                "firstOrder": True,
                "placedAt": datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
                "note": "ünïcødé ✓ 💥",
            },
            context={"ip": "198.51.100.7", "locale": "de-DE", "app": {"version": "3.1"}},
            timestamp=fixed,
            integrations={"All": False, "Mixpanel": True},
        ),
        "track_anonymous": lambda: client.track(
            anonymous_id="anon-1", event="Product Viewed", properties={"sku": "A-1"}
        ),
        "identify": lambda: client.identify(
            user_id="user-1",
            traits={"email": "ada@example.com", "plan": "pro", "logins": 7},
            context={"userAgent": "pytest"},
            timestamp=yesterday,
            anonymous_id="anon-1",
        ),
        "identify_anonymous": lambda: client.identify(
            anonymous_id="anon-2", traits={"newsletter": False}
        ),
        "page": lambda: client.page(
            user_id="user-1",
            category="Docs",
            name="Pricing",
            properties={"url": "https://example.com/pricing", "referrer": ""},
            integrations={"Google Analytics": {"clientId": "123.456"}},
        ),
        "screen": lambda: client.screen(
            anonymous_id="anon-3",
            category="Onboarding",
            name="Welcome",
            properties={"step": 1},
            timestamp=yesterday,
        ),
        "group": lambda: client.group(
            user_id=42,  # the SDK turns numeric ids into strings
            group_id="acme",
            traits={"name": "Acme Inc.", "employees": 250},
            context={"groupId": "acme"},
        ),
        "alias": lambda: client.alias(
            previous_id="anon-1", user_id="user-1", message_id="alias-fixed-id"
        ),
    }
    sent = {}
    for name, call in calls.items():
        queued, message = call()
        assert queued
        sent[name] = message
    return sent


def check_event(stored: dict[str, Any], message: dict[str, Any], peer: str) -> None:
    """One stored event against the message the SDK queued for it."""
    sent = wire(message)
    assert stored["type"] == sent["type"]
    assert stored["messageId"] == sent["messageId"]
    for field in ("userId", "anonymousId"):
        assert stored.get(field) == sent.get(field)
    for field in ("event", "name", "category", "groupId", "previousId"):
        assert stored.get(field) == sent.get(field), field
    if sent["type"] in ("track", "page", "screen"):
        assert stored["properties"] == sent["properties"]
    if sent["type"] in ("identify", "group"):
        assert stored["traits"] == sent["traits"]
    assert stored.get("integrations") == (sent["integrations"] or None)
    context = stored["context"]
    assert context["library"] == {"name": "analytics-python", "version": VERSION}
    assert context["ip"] == sent["context"].get("ip", peer)
    for key, value in sent["context"].items():
        assert context[key] == value
    assert "writeKey" not in stored

    # The SDK stamps the call time; the batch carries sentAt; AUIE adds receivedAt and
    # corrects the client's clock: timestamp = receivedAt - (sentAt - originalTimestamp).
    original = when(stored["originalTimestamp"])
    sent_at, received = when(stored["sentAt"]), when(stored["receivedAt"])
    stamp = when(stored["timestamp"])
    assert original == datetime.fromisoformat(sent["timestamp"])
    assert abs(stamp - (received - (sent_at - original))) <= SKEW_TOLERANCE
    # One machine, one clock: sent shortly before received, and no skew to speak of.
    assert timedelta(0) <= received - sent_at + SKEW_TOLERANCE < timedelta(seconds=10)
    assert abs(stamp - original) < timedelta(seconds=10)


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_every_call_type_lands_in_the_log(server: Server, gzip: bool) -> None:
    sdk = make_sdk(server, gzip=gzip)
    started = datetime.now(UTC)
    sent = send_every_call_type(sdk.client)
    sdk.client.shutdown()  # flush the queue, stop the consumer thread
    finished = datetime.now(UTC)
    assert sdk.errors == []

    stored = log_tail(server.data_dir)
    by_id = {event["messageId"]: event for event in stored}
    assert len(stored) == len(by_id) == len(sent)
    assert sent["alias"]["messageId"] == "alias-fixed-id"
    for name, message in sent.items():
        assert message["messageId"] in by_id, name
        check_event(by_id[message["messageId"]], message, peer="127.0.0.1")
    for event in stored:
        assert started - SKEW_TOLERANCE <= when(event["sentAt"]) <= finished
        assert started - SKEW_TOLERANCE <= when(event["receivedAt"]) <= finished

    by_name = {name: by_id[message["messageId"]] for name, message in sent.items()}
    assert by_name["group"]["userId"] == "42"
    assert by_name["track"]["properties"]["revenue"] == 42.5
    assert by_name["track"]["properties"]["placedAt"] == "2024-05-01T10:00:00+00:00"
    assert by_name["track"]["originalTimestamp"] == "2024-05-01T10:30:15.123Z"
    assert by_name["track"]["context"]["ip"] == "198.51.100.7"
    assert by_name["identify_anonymous"]["anonymousId"] == "anon-2"
    assert "userId" not in by_name["identify_anonymous"]


def test_many_events_in_several_sdk_batches_are_stored_once(server: Server) -> None:
    sdk = make_sdk(server, upload_size=40, gzip=True)
    ids = []
    for i in range(250):
        queued, message = sdk.client.track(
            user_id=f"user-{i % 7}", event="Tick", properties={"i": i, "pad": "x" * 200}
        )
        assert queued
        ids.append(message["messageId"])
    sdk.client.shutdown()
    assert sdk.errors == []

    stored = log_tail(server.data_dir)
    assert sorted(event["messageId"] for event in stored) == sorted(ids)
    assert sorted(event["properties"]["i"] for event in stored) == list(range(250))
    # Several batches, so several sentAt values.
    assert len({event["sentAt"] for event in stored}) > 1


def test_wrong_write_key_reaches_on_error_and_stores_nothing(server: Server) -> None:
    sdk = make_sdk(server, write_key="wk_not_a_real_key")
    _, tracked = sdk.client.track(user_id="user-1", event="Signed Up")
    _, identified = sdk.client.identify(user_id="user-1", traits={"plan": "pro"})
    sdk.client.shutdown()  # the consumer reports a failed batch before marking it done

    assert sdk.errors, "on_error was not called"
    failed_ids = set()
    for error, batch in sdk.errors:
        assert isinstance(error, APIError)
        assert error.status == 401
        assert error.code == "invalid_write_key"
        failed_ids.update(message["messageId"] for message in batch)
    assert failed_ids == {tracked["messageId"], identified["messageId"]}
    assert log_records(server.data_dir) == {"events": 0, "deadletters": 0}

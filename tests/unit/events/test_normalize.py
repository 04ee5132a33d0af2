"""The event model: Segment message shapes normalised into one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auie.errors import InvalidEvent
from auie.events import Normalizer, format_time, parse_time

RECEIVED = datetime(2026, 11, 25, 12, 0, 0, 123_000, tzinfo=UTC)


def normalize(message: object, kind: str | None = None, **kwargs: object) -> dict[str, object]:
    return Normalizer(received_at=RECEIVED, peer_ip="192.0.2.4", **kwargs).normalize(message, kind)  # type: ignore[arg-type]


def test_times_are_utc_with_milliseconds() -> None:
    assert format_time(RECEIVED) == "2026-11-25T12:00:00.123Z"
    assert parse_time("2026-11-25T13:00:00+01:00", "t") == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert parse_time("2026-11-25T12:00:00", "t").tzinfo == UTC


def test_missing_message_id_is_assigned_and_unique() -> None:
    first = normalize({"type": "track", "userId": "u", "event": "E"})
    second = normalize({"type": "track", "userId": "u", "event": "E"})
    assert str(first["messageId"]).startswith("auie-")
    assert first["messageId"] != second["messageId"]


def test_numeric_ids_become_strings_and_empty_ids_are_missing() -> None:
    event = normalize({"type": "identify", "userId": 42, "anonymousId": ""})
    assert event["userId"] == "42"
    assert "anonymousId" not in event


def test_ids_lose_surrounding_white_space_and_blank_ids_are_missing() -> None:
    """Identity resolution ignores the white space, so the lake must too: otherwise the
    profile of "u-1" would not find the events of " u-1 "."""
    event = normalize(
        {"type": "alias", "userId": " u-1\t", "anonymousId": "   ", "previousId": " p "}
    )
    assert (event["userId"], event["previousId"]) == ("u-1", "p")
    assert "anonymousId" not in event
    assert normalize({"type": "group", "anonymousId": "a", "groupId": " g "})["groupId"] == "g"
    with pytest.raises(InvalidEvent) as refused:
        normalize({"type": "track", "userId": " ", "anonymousId": "\n", "event": "E"})
    assert refused.value.code == "missing_identity"


def test_path_type_wins_over_body_type() -> None:
    assert normalize({"type": "identify", "userId": "u", "event": "E"}, "track")["type"] == "track"


def test_unknown_fields_pass_through_and_reserved_ones_are_server_owned() -> None:
    event = normalize(
        {
            "type": "track",
            "userId": "u",
            "event": "E",
            "channel": "server",
            "version": 2,
            "writeKey": "secret",
            "receivedAt": "1999-01-01T00:00:00Z",
        }
    )
    assert event["channel"] == "server"
    assert event["version"] == 2
    assert "writeKey" not in event
    assert event["receivedAt"] == "2026-11-25T12:00:00.123Z"


def test_context_ip_from_peer_unless_given() -> None:
    assert normalize({"type": "track", "userId": "u", "event": "E"})["context"] == {
        "ip": "192.0.2.4"
    }
    given = normalize({"type": "track", "userId": "u", "event": "E", "context": {"ip": "10.1.1.1"}})
    assert given["context"] == {"ip": "10.1.1.1"}


def test_identify_traits_from_context_traits_merge_under_traits() -> None:
    event = normalize(
        {
            "type": "identify",
            "userId": "u",
            "traits": {"plan": "pro"},
            "context": {"traits": {"plan": "free", "email": "a@b.c"}},
        }
    )
    assert event["traits"] == {"plan": "pro", "email": "a@b.c"}


def test_clock_skew_uses_batch_sent_at_when_the_item_has_none() -> None:
    sent = RECEIVED + timedelta(minutes=5)  # client clock 5 minutes fast, no latency
    event = normalize(
        {
            "type": "track",
            "userId": "u",
            "event": "E",
            "timestamp": format_time(sent - timedelta(seconds=3)),
        },
        batch_sent_at=format_time(sent),
    )
    assert event["timestamp"] == format_time(RECEIVED - timedelta(seconds=3))
    assert event["sentAt"] == format_time(sent)


def test_timestamp_without_sent_at_is_kept() -> None:
    event = normalize({"type": "page", "userId": "u", "timestamp": "2020-01-01T00:00:00Z"})
    assert event["timestamp"] == "2020-01-01T00:00:00.000Z"
    assert event["originalTimestamp"] == "2020-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2020-01-01T02:00:00.5+02:00", "2020-01-01T00:00:00.500Z"),
        ("2020-01-01T00:00:00.123456Z", "2020-01-01T00:00:00.123Z"),
        ("2020-01-01 00:00:00.123", "2020-01-01T00:00:00.123Z"),
        ("2020-01-01T00:00:00.123Z", "2020-01-01T00:00:00.123Z"),
    ],
)
def test_every_timestamp_is_stored_in_one_form(sent: str, stored: str) -> None:
    # Offsets, microseconds and a space separator are rewritten; the canonical form is
    # kept as sent (the collector skips formatting it again).
    event = normalize(
        {"type": "track", "userId": "u", "event": "E", "timestamp": sent}, batch_sent_at=sent
    )
    assert event["originalTimestamp"] == stored
    assert event["sentAt"] == stored
    assert event["timestamp"] == format_time(RECEIVED)


@pytest.mark.parametrize(
    "timestamp",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", 12345, "2020-13-01T00:00:00Z"],
)
def test_out_of_range_timestamps_are_rejected(timestamp: object) -> None:
    with pytest.raises(InvalidEvent) as info:
        normalize(
            {
                "type": "track",
                "userId": "u",
                "event": "E",
                "timestamp": timestamp,
                "sentAt": "0001-01-01T00:00:00Z",
            }
        )
    assert info.value.code == "invalid_timestamp"


@given(
    moment=st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=9, minutes=30))]
        ),
    )
)
def test_format_time_is_isoformat_in_utc_with_milliseconds(moment: datetime) -> None:
    # format_time caches the text of each whole second; it must say what isoformat says.
    expected = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    assert format_time(moment) == expected.removesuffix("+00:00") + "Z"
    assert format_time(moment) == format_time(moment)  # from the cache, the same


def test_an_event_time_far_in_the_future_takes_the_arrival_time() -> None:
    """A clock set years ahead would make its events win every last-write-wins (traits,
    consent) for ever: beyond a day after arrival, the event time is the arrival time."""
    ahead = RECEIVED + timedelta(days=2)
    event = normalize({"type": "identify", "userId": "u", "timestamp": ahead.isoformat()})
    assert event["timestamp"] == "2026-11-25T12:00:00.123Z"  # received
    assert event["originalTimestamp"] == format_time(ahead)
    skewed = {"timestamp": "2999-01-01T00:00:00Z", "sentAt": "2999-01-01T00:00:01Z"}
    corrected = normalize({"type": "track", "userId": "u", "event": "E", **skewed})
    assert corrected["timestamp"] == format_time(RECEIVED - timedelta(seconds=1))  # skew fix
    tomorrow = RECEIVED + timedelta(hours=23)
    kept = normalize(
        {"type": "track", "userId": "u", "event": "E", "timestamp": tomorrow.isoformat()}
    )
    assert kept["timestamp"] == format_time(tomorrow)

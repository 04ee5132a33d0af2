"""The precise "is this record about the person?" test and the subject's normalisation."""

from __future__ import annotations

import pytest

from auie.errors import InvalidRequest
from auie.privacy.person import Person, Subject


def person() -> Person:
    return Person(
        "ws",
        {
            "user_id:u1",
            "anonymous_id:a-7",
            "email:ada@example.com",
            "phone:+4930123",
            "ios_idfa:IDFA-1",
        },
        profiles={"p_current"},
        profile_ids={"p_current", "p_old"},
        pii={"Ada Lovelace"},
    )


@pytest.mark.parametrize(
    "record",
    [
        {"userId": "u1"},
        {"user_id": "u1"},
        {"anonymousId": " a-7 "},
        {"type": "alias", "userId": "u9", "previousId": "a-7"},
        {"traits": {"email": "ADA@Example.COM"}},
        {"context": {"traits": {"email": "ada@example.com"}}},
        {"traits": {"phone": "+4930123"}},
        {"context": {"externalIds": [{"id": "IDFA-1", "type": "ios-idfa"}]}},
        {"profileId": "p_old"},
        {"person_id": "anon:a-7"},
        {"payload": [{"deep": {"deeper": {"userId": "u1"}}}]},
    ],
)
def test_a_record_naming_the_person_in_an_identifying_field_matches(record: dict) -> None:
    assert person().mentions(record)


@pytest.mark.parametrize(
    "record",
    [
        {"userId": "u10"},
        {"userId": "xu1"},
        {"anonymousId": "a-77"},
        {"properties": {"note": "u1"}},  # not an identifying field
        {"traits": {"email": "ada@example.co"}},
        {"context": {"externalIds": [{"id": "IDFA-1", "type": "android_id"}]}},
        {"userId": None, "anonymousId": True},
        {"eventId": "e-1"},  # no decision of the person yet
    ],
)
def test_other_values_never_match(record: dict) -> None:
    assert not person().mentions(record)


def test_decision_ids_match_once_known() -> None:
    subject = person()
    subject.decision_ids.add("e-1")
    assert subject.mentions({"eventId": "e-1", "value": 1})


def test_text_that_is_not_json_is_searched_for_quoted_identifiers() -> None:
    subject = person()
    assert subject.mentions_text('{"userId":"u1",')  # cut JSON
    assert not subject.mentions_text('{"userId":"u10",')
    assert subject.mentions_text('broken "ADA@example.com" text')


def test_free_text_matches_whole_values_only() -> None:
    subject = person()
    assert subject.mentions_free_text("'ada@example.com' is not valid")
    assert subject.mentions_free_text("name was Ada Lovelace.")
    assert not subject.mentions_free_text("user u10 is fine")
    assert subject.mentions_free_text("user u1 is fine")


def test_needles_are_json_strings_with_quotes() -> None:
    needles = dict(person().needles())
    assert needles[b'"u1"'] is False
    assert needles[b'"ada@example.com"'] is True  # searched case-insensitively
    assert b'"p_old"' in needles


def test_subject_normalises_and_refuses_nonsense() -> None:
    subject = Subject.of([("email", "  Ada@Example.COM "), ("user_id", "u1"), ("user_id", None)])
    assert subject.nodes == ["email:ada@example.com", "user_id:u1"]
    with pytest.raises(InvalidRequest):
        Subject.of([("user_id", None)])
    with pytest.raises(InvalidRequest):
        Subject.of([("Bad Type!", "x")])
    with pytest.raises(InvalidRequest):
        Subject.of([("user_id", "   ")])


def test_mart_keys_name_a_pseudonymised_person_once_the_hashes_are_known() -> None:
    """Marts key a pseudonymised person (no ``analytics`` consent) by their id's hash:
    ``pseudo:<hash>`` (``anon:``/``user:`` of it in marts built before), so erasure needs
    those keys too, and never a hash of anybody else."""
    subject = person()
    assert subject.mart_keys >= {"p_current", "p_old", "anon:a-7", "user:u1"}
    assert not any(key.startswith("pseudo:") for key in subject.mart_keys)
    subject.hashes = {"h_0123456789abcdef0123"}
    assert subject.mart_keys >= {
        "h_0123456789abcdef0123",
        "pseudo:h_0123456789abcdef0123",
        "anon:h_0123456789abcdef0123",
        "user:h_0123456789abcdef0123",
        "p_current",
    }
    assert "pseudo:h_ffffffffffffffffffff" not in subject.mart_keys

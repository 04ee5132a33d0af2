"""The pseudonymising views and the untrusted-SQL check, on a real DuckDB."""

from __future__ import annotations

import json

import duckdb
import pytest

from auie.analytics import pseudonymous
from auie.analytics.duckdb_engine import check_untrusted
from auie.config import PrivacyConfig
from auie.errors import InvalidRequest
from auie.privacy.crypto import Pseudonymizer
from auie.privacy.fields import PiiRules

KEY = Pseudonymizer(b"k" * 32)
#: The defaults: ``name`` counts in traits and extra fields, not in properties.
RULES = PiiRules.of(PrivacyConfig())


@pytest.fixture
def conn() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    pseudonymous.register(connection, "ws1", KEY.pseudonym, RULES)
    return connection


def test_mart_people_keep_profile_ids_and_hash_unresolved_ids(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    conn.execute(
        "CREATE TABLE user_features AS SELECT * FROM (VALUES"
        " ('p_123', 'anon:a-1', 'u-9', 3), ('user:u-7', NULL, NULL, 1)"
        ") t(person_id, previous_person_id, user_id, events)"
    )
    columns = ["person_id", "previous_person_id", "user_id", "events"]
    rows = conn.execute(pseudonymous.view_sql("user_features", columns)).fetchall()
    assert rows == [
        (
            "p_123",
            "anon:" + KEY.pseudonym("ws1", "anonymous_id:a-1"),
            KEY.pseudonym("ws1", "user_id:u-9"),
            3,
        ),
        ("user:" + KEY.pseudonym("ws1", "user_id:u-7"), None, None, 1),
    ]


def test_identities_and_json_fields(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        "CREATE TABLE identities AS SELECT * FROM (VALUES"
        " ('email', 'x@example.com', 'p_1', NULL),"
        " ('user_id', 'u-1', 'p_1', 'h_stored')) t(id_type, id_value, profile_id, id_hash)"
    )
    rows = conn.execute(
        pseudonymous.view_sql("identities", ["id_type", "id_value", "profile_id", "id_hash"])
    ).fetchall()
    # A stored hash wins; otherwise the same function computes it.
    assert rows == [
        ("email", KEY.pseudonym("ws1", "email:x@example.com"), "p_1"),
        ("user_id", "h_stored", "p_1"),
    ]
    conn.execute(
        """CREATE TABLE events AS SELECT '{"email": "x@y.z", "plan": "pro"}' AS traits,"""
        """ '{"ip": "10.0.0.1", "traits": {"name": "X"}, "locale": "fr"}' AS context,"""
        " '10.0.0.1' AS context_ip"
    )
    row = conn.execute(
        pseudonymous.view_sql("events", ["traits", "context", "context_ip"], RULES)
    ).fetchone()
    assert row == ('{"plan":"pro"}', '{"locale":"fr"}', None)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM events",
        "SELECT count(*) FROM events e JOIN identities i ON i.id_value = e.user_id",
        "WITH t AS (SELECT 1 AS x) SELECT * FROM t, range(3)",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT table_name FROM information_schema.tables",
        "SELECT column_name FROM INFORMATION_SCHEMA.Columns",
        "SHOW TABLES",
        "DESCRIBE events",
        "SUMMARIZE events",
    ],
)
def test_untrusted_sql_allowed(query: str) -> None:
    check_untrusted(query)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("SELECT * FROM read_parquet('lake/ws/events/data/x.parquet')", "forbidden_function"),
        ("SELECT * FROM events WHERE 1 IN (SELECT 1 FROM glob('*'))", "forbidden_function"),
        ("SELECT * FROM query('SELECT * FROM __current_ids')", "forbidden_function"),
        ("SELECT * FROM query_table('events')", "forbidden_function"),
        ("SELECT * FROM duckdb_settings()", "forbidden_function"),
        ("SELECT auie_pseudonym('user_id', 'u-ada')", "forbidden_function"),
        ("SELECT 'user_id'.Auie_Pseudonym('u-ada')", "forbidden_function"),
        (
            "SELECT * FROM events WHERE user_id = main.auie_pseudonym('user_id', 'u')",
            "forbidden_function",
        ),
        ("SELECT auie_person('user:u-ada') OVER ()", "forbidden_function"),
        ("SELECT * FROM 'lake/ws/events/data/x.parquet'", "unknown_table"),
        ('SELECT * FROM "/etc/passwd"', "unknown_table"),
        ("SELECT * FROM __current_ids", "unknown_table"),
        ("SELECT * FROM __shape_events", "unknown_table"),
        ("SELECT * FROM system.main.duckdb_tables", "unknown_table"),
        ("SELECT sql FROM duckdb_views", "unknown_table"),
        ("SELECT setting FROM pg_settings", "unknown_table"),
        ("SELECT * FROM pg_catalog.pg_class", "unknown_table"),
        ("SUMMARIZE pragma_database_list", "unknown_table"),
        ("SELECT * FROM information_schema.views", "unknown_table"),
        ("SELECT * FROM auie_internal.current_ids", "unknown_table"),
        ("SELECT current_setting('temp_directory')", "forbidden_function"),
        ("SUMMARIZE SELECT getvariable('x')", "forbidden_function"),
        ("COPY events TO 'x.csv'", "read_only"),
        ("SELECT 1; SELECT 2", "invalid_query"),
    ],
)
def test_untrusted_sql_refused(query: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_untrusted(query)
    assert caught.value.code == code


def test_decision_context_loses_the_joined_traits(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        "CREATE TABLE decisions AS SELECT * FROM (VALUES"
        """ ('u-1', '{"user": {"traits": {"email": "x@y.z"}, "computed": {"n": 1}}, "ip": "1"}'),"""
        """ ('u-2', '{"device": "mobile"}'), ('u-3', '{"user": "x"}')) t(user_id, context)"""
    )
    rows = conn.execute(
        pseudonymous.view_sql("decisions", ["user_id", "context"], RULES)
    ).fetchall()
    assert rows == [
        (KEY.pseudonym("ws1", "user_id:u-1"), '{"user":{"computed":{"n":1}}}'),
        (KEY.pseudonym("ws1", "user_id:u-2"), '{"device":"mobile"}'),  # no "user" added
        (KEY.pseudonym("ws1", "user_id:u-3"), '{"user":"x"}'),
    ]


def test_extra_pii_fields_external_ids_and_advertising_id_are_hidden(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    conn.execute(
        "CREATE TABLE events AS SELECT * FROM (VALUES"
        """ ('{"email": "hal@example.com", "phone": "+1 555 0100", "campaign": "x"}',"""
        """  '{"externalIds": [{"id": "crm-9", "type": "crm"}],"""
        """   "device": {"advertisingId": "ad-1", "type": "ios"}, "locale": "fr"}'),"""
        """ (NULL, '{"locale": "de"}')) t(extra, context)"""
    )
    rows = conn.execute(pseudonymous.view_sql("events", ["extra", "context"], RULES)).fetchall()
    assert json.loads(rows[0][0]) == {"campaign": "x"}
    assert json.loads(rows[0][1]) == {"device": {"type": "ios"}, "locale": "fr"}
    assert rows[1][0] is None  # NULL stays NULL
    assert json.loads(rows[1][1]) == {"locale": "de"}  # no "device" added


def test_pii_fields_are_removed_as_the_privacy_stage_finds_them(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    """Any case, at any depth of traits and extra fields, at the top level of properties with
    their own names: what ``privacy.encrypt_pii = false`` leaves in the lake must not reach
    a caller without ``pii:read`` through a differently spelled or nested key."""
    traits = {
        "Email": "hal@example.com",  # another case
        "contact": {"PHONE": "+1 555 0100", "kind": "work"},  # nested
        "children": [{"first_name": "Ann", "age": 4}],  # in an array
        "plan": "pro",
    }
    properties = {
        "name": "Blue Shoes",  # Segment's product name: not a person's
        "EMAIL": "hal@example.com",
        "products": [{"name": "Blue Shoes", "email": "support@shop.example"}],  # top only
        "price": 9.5,
    }
    extra = {"crm": {"Address": {"street": "1 Main St"}, "tier": 2}}
    escaped = '{"em\\u0061il": "hal@example.com", "ok": 1}'  # a key spelled with an escape
    untouched = '{"plan": "basic",   "seats": 3}'  # text kept as stored when nothing goes
    conn.execute("CREATE TABLE events (traits VARCHAR, properties VARCHAR, extra VARCHAR)")
    conn.executemany(
        "INSERT INTO events VALUES (?, ?, ?)",
        [
            (json.dumps(traits), json.dumps(properties), json.dumps(extra)),
            (escaped, untouched, '{"email": "hal@example.com"'),  # truncated
            (None, None, None),
        ],
    )
    rows = conn.execute(
        pseudonymous.view_sql("events", ["traits", "properties", "extra"], RULES)
    ).fetchall()
    assert json.loads(rows[0][0]) == {
        "contact": {"kind": "work"},
        "children": [{"age": 4}],
        "plan": "pro",
    }
    assert json.loads(rows[0][1]) == {
        "name": "Blue Shoes",
        "products": [{"name": "Blue Shoes", "email": "support@shop.example"}],
        "price": 9.5,
    }
    assert json.loads(rows[0][2]) == {"crm": {"tier": 2}}
    assert json.loads(rows[1][0]) == {"ok": 1}
    assert rows[1][1] == untouched
    assert rows[1][2] is None  # no JSON, yet naming a PII field: not shown, no error
    assert rows[2] == (None, None, None)


def test_the_remover_is_internal() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_untrusted("SELECT auie_strip_pii('traits', '{}')")
    assert caught.value.code == "forbidden_function"


def test_names_the_search_cannot_see_send_every_row_to_the_remover() -> None:
    """JSON may escape ``/`` as ``\\/``: a name with a slash (or any non-ASCII name) is not
    searched for natively, every row of the column goes through the remover."""
    rules = PiiRules(["e/mail", "straße"], [])
    connection = duckdb.connect(":memory:")
    pseudonymous.register(connection, "ws1", KEY.pseudonym, rules)
    connection.execute(
        "CREATE TABLE events AS SELECT * FROM (VALUES"
        """ ('{"e\\/mail": "x@y.z", "k": 1}'), ('{"STRAẞE": "Hauptstr. 1", "k": 2}')) t(traits)"""
    )
    rows = connection.execute(pseudonymous.view_sql("events", ["traits"], rules)).fetchall()
    assert [json.loads(text) for (text,) in rows] == [{"k": 1}, {"k": 2}]

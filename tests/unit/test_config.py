"""The settings tree: sources and their priority, and every way a setting can be wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from auie.config import PrivacyConfig, Settings, load_settings
from auie.errors import ConfigError

TOML = """
data_dir = "from-toml"
log_level = "warning"

[server]
host = "0.0.0.0"
port = 7000
trusted_proxies = ["10.0.0.0/8"]

[collect]
max_batch_events = 10
"""


@pytest.fixture(autouse=True)
def _empty_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No stray ./auie.toml from wherever pytest runs."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "auie.toml"
    path.write_text(TOML)
    return path


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.data_dir == Path("auie-data")
    assert settings.server.port == 8080
    assert settings.server.host == "127.0.0.1"
    assert settings.server.trusted_proxies == ()
    assert settings.auth.signing_algorithm == "ES256"
    assert settings.eventlog_path == Path("auie-data/log/eventlog.db")
    assert settings.database_url == f"sqlite:///{Path('auie-data/auie.db').resolve()}"


def test_toml_file_over_defaults(toml_file: Path) -> None:
    settings = load_settings(config_file=toml_file, environ={})
    assert settings.data_dir == Path("from-toml")
    assert settings.log_level == "warning"
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 7000)
    assert settings.server.trusted_proxies == ("10.0.0.0/8",)
    assert settings.collect.max_batch_events == 10
    # Keys the file does not set keep their defaults, in the same section too.
    assert settings.server.bootstrap is True
    assert settings.collect.max_event_bytes == 32 * 1024


def test_env_over_toml(toml_file: Path) -> None:
    environ = {
        "AUIE_SERVER__PORT": "7100",
        "AUIE_LOG_LEVEL": "error",
        "AUIE_COLLECT__RATE_LIMIT_BURST": "5",
    }
    settings = load_settings(config_file=toml_file, environ=environ)
    assert settings.server.port == 7100
    assert settings.server.host == "0.0.0.0", "the file's other keys of the section stay"
    assert settings.log_level == "error"
    assert settings.collect.rate_limit_burst == 5
    assert settings.collect.max_batch_events == 10


def test_overrides_over_env_over_toml(toml_file: Path) -> None:
    environ = {"AUIE_SERVER__PORT": "7100", "AUIE_SERVER__HOST": "10.1.1.1"}
    overrides = {"server.port": 7200, "collect.max_batch_events": 20}
    settings = load_settings(overrides, config_file=toml_file, environ=environ)
    assert settings.server.port == 7200
    assert settings.server.host == "10.1.1.1"
    assert settings.collect.max_batch_events == 20
    assert settings.log_level == "warning"


def test_none_overrides_fall_through(toml_file: Path) -> None:
    """Unset CLI flags arrive as None and must not hide lower sources."""
    environ = {"AUIE_SERVER__PORT": "7100"}
    overrides = {"server.port": None, "server.host": None, "data_dir": None}
    settings = load_settings(overrides, config_file=toml_file, environ=environ)
    assert settings.server.port == 7100
    assert settings.server.host == "0.0.0.0"
    assert settings.data_dir == Path("from-toml")


def test_data_dir_from_env_moves_every_default_path(tmp_path: Path) -> None:
    settings = load_settings(environ={"AUIE_DATA_DIR": str(tmp_path / "d")})
    assert settings.data_dir == tmp_path / "d"
    assert settings.eventlog_path == tmp_path / "d" / "log" / "eventlog.db"
    assert settings.database_url == f"sqlite:///{tmp_path / 'd' / 'auie.db'}"
    over = load_settings({"data_dir": tmp_path / "e"}, environ={"AUIE_DATA_DIR": "x"})
    assert over.data_dir == tmp_path / "e"


def test_auie_toml_in_the_working_directory_is_read(toml_file: Path) -> None:
    (Path.cwd() / "auie.toml").write_text("[server]\nport = 7300\n")
    assert load_settings(environ={}).server.port == 7300
    # An explicit file replaces it (it is not merged with it).
    settings = load_settings(config_file=toml_file, environ={})
    assert settings.server.port == 7000


def test_auie_config_env_names_the_file(toml_file: Path) -> None:
    (Path.cwd() / "auie.toml").write_text("[server]\nport = 7300\n")
    settings = load_settings(environ={"AUIE_CONFIG": str(toml_file)})
    assert settings.server.port == 7000
    # AUIE_CONFIG is not itself a setting (no "unknown key 'config'").
    assert not hasattr(settings, "config")


def test_explicit_config_file_wins_over_auie_config(toml_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 7400\n")
    settings = load_settings(config_file=other, environ={"AUIE_CONFIG": str(toml_file)})
    assert settings.server.port == 7400


def test_auie_config_pointing_to_a_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_settings(environ={"AUIE_CONFIG": str(missing)})
    assert str(missing) in info.value.message
    assert info.value.code == "config_error"


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path, environ={})  # a directory is not a config file


def test_unparsable_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\nport = ")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config_file=path, environ={})


# -- unknown keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nprot = 1\n", "server.prot"),
        ("colour = 'blue'\n", "colour"),
        ("[servre]\nport = 1\n", "servre"),
        ("[auth]\ntoken_ttl = 60\n", "auth.token_ttl"),
    ],
)
def test_unknown_key_in_toml(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "auie.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"unknown key '{key}'")):
        load_settings(config_file=path, environ={})


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("AUIE_SERVER__PROT", "server.prot"),
        ("AUIE_SERVER_PORT", "server_port"),  # one underscore: not a section separator
        ("AUIE_COLOUR", "colour"),
        ("AUIE_COLLECT__MAX_BATCH", "collect.max_batch"),
    ],
)
def test_unknown_key_in_env(name: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"unknown key '{key}'")):
        load_settings(environ={name: "1"})


def test_environment_without_the_prefix_is_ignored() -> None:
    settings = load_settings(environ={"SERVER__PORT": "1", "auie_server__port": "2", "PATH": "/"})
    assert settings.server.port == 8080


@pytest.mark.parametrize("key", ["server.prot", "colour", "auth.kid", "eventlog.partition"])
def test_unknown_key_in_overrides(key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"unknown key '{key}'")):
        load_settings({key: 1}, environ={})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"server.prot": 1, "server.port": "x"}, environ={"AUIE_NOPE": "1"})
    message = info.value.message
    assert "unknown key 'server.prot'" in message
    assert "unknown key 'nope'" in message
    assert "server.port" in message


# -- wrong values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"server.port": "eighty"}, "server.port"),
        ({"server.port": 70000}, "server.port"),
        ({"server.port": -1}, "server.port"),
        ({"server.bootstrap": "maybe"}, "server.bootstrap"),
        ({"server.trusted_proxies": "10.0.0.0/8"}, "server.trusted_proxies"),
        ({"log_level": "verbose"}, "log_level"),
        ({"collect.max_batch_events": 0}, "collect.max_batch_events"),
        ({"collect.rate_limit_events_per_second": -1}, "collect.rate_limit_events_per_second"),
        ({"auth.signing_algorithm": "HS256"}, "auth.signing_algorithm"),
        ({"auth.token_ttl_seconds": 5}, "auth.token_ttl_seconds"),
        ({"eventlog.type": "kafka"}, "eventlog.type"),
        ({"server": 5}, "server"),
    ],
)
def test_wrong_types_and_ranges(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid configuration: .*{re.escape(key)}"):
        load_settings(overrides, environ={})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("AUIE_SERVER__PORT", "eighty"),
        ("AUIE_SERVER__BOOTSTRAP", "sometimes"),
        ("AUIE_COLLECT__WRITE_KEY_CACHE_SECONDS", "-1"),
        ("AUIE_SERVER__TRUSTED_PROXIES", "10.0.0.0/8"),  # lists are JSON in env
        ("AUIE_SERVER__TRUSTED_PROXIES", "[not json"),
    ],
)
def test_wrong_values_in_env(name: str, raw: str) -> None:
    key = name.removeprefix("AUIE_").lower().replace("__", ".")
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(environ={name: raw})


@pytest.mark.parametrize(
    ("computed", "problem"),
    [
        (
            [{"name": "sessions", "kind": "count"}],
            "computed trait name 'sessions' is a built-in computed trait",
        ),
        (
            [
                {"name": "orders", "kind": "count"},
                {"name": "orders", "kind": "count", "event": "x"},
            ],
            "computed traits declared twice: orders",
        ),
    ],
)
def test_declared_computed_traits_have_names_of_their_own(
    tmp_path: Path, computed: list[dict[str, str]], problem: str
) -> None:
    """A declared trait named like a built-in one, or twice, would overwrite the other's
    value on every profile."""
    lines = "".join(
        "[[profiles.computed]]\n" + "".join(f'{k} = "{v}"\n' for k, v in trait.items())
        for trait in computed
    )
    path = tmp_path / "auie.toml"
    path.write_text(lines)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_settings(config_file=path, environ={})


def test_wrong_type_in_toml(tmp_path: Path) -> None:
    path = tmp_path / "auie.toml"
    path.write_text('[server]\nport = "eighty"\n')
    with pytest.raises(ConfigError, match=re.escape("server.port")):
        load_settings(config_file=path, environ={})


def test_env_strings_are_coerced() -> None:
    environ = {
        "AUIE_SERVER__BOOTSTRAP": "false",
        "AUIE_COLLECT__WRITE_KEY_CACHE_SECONDS": "0.5",
        "AUIE_AUTH__SIGNING_ALGORITHM": "EdDSA",
    }
    settings = load_settings(environ=environ)
    assert settings.server.bootstrap is False
    assert settings.collect.write_key_cache_seconds == 0.5
    assert settings.auth.signing_algorithm == "EdDSA"


# -- lists and networks -------------------------------------------------------------------


def test_json_lists_in_env() -> None:
    raw = '["10.0.0.0/8", "192.168.1.1", "2001:db8::/32"]'
    settings = load_settings(environ={"AUIE_SERVER__TRUSTED_PROXIES": raw})
    assert settings.server.trusted_proxies == ("10.0.0.0/8", "192.168.1.1", "2001:db8::/32")


def test_env_list_replaces_the_toml_list(toml_file: Path) -> None:
    environ = {"AUIE_SERVER__TRUSTED_PROXIES": '["172.16.0.0/12"]'}
    settings = load_settings(config_file=toml_file, environ=environ)
    assert settings.server.trusted_proxies == ("172.16.0.0/12",)
    empty = load_settings(
        config_file=toml_file, environ={"AUIE_SERVER__TRUSTED_PROXIES": "[]"}
    ).server.trusted_proxies
    assert empty == ()


@pytest.mark.parametrize("network", ["10.0.0.0/33", "not-a-network", "300.1.1.1", "10.0.0.0/8/8"])
def test_invalid_cidr_is_rejected(network: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("server.trusted_proxies")):
        load_settings({"server.trusted_proxies": [network]}, environ={})
    with pytest.raises(ConfigError, match=re.escape("server.trusted_proxies")):
        load_settings(environ={"AUIE_SERVER__TRUSTED_PROXIES": f'["{network}"]'})
    path = tmp_path / "auie.toml"
    path.write_text(f'[server]\ntrusted_proxies = ["{network}"]\n')
    with pytest.raises(ConfigError, match=re.escape("server.trusted_proxies")):
        load_settings(config_file=path, environ={})


def test_host_bits_in_a_network_are_accepted() -> None:
    settings = load_settings({"server.trusted_proxies": ["10.1.2.3/8"]}, environ={})
    assert settings.server.trusted_proxies == ("10.1.2.3/8",)


# -- the result ---------------------------------------------------------------------------


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.server.port = 1  # type: ignore[misc]


def test_database_url_is_a_secret() -> None:
    url = "postgresql://auie:hunter2@db.internal:5432/auie"
    settings = load_settings(environ={"AUIE_DATABASE__URL": url})
    assert settings.database_url == url
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


def test_pii_properties_default_leaves_segments_reserved_name_out_unless_chosen(
    tmp_path: Path,
) -> None:
    """Segment reserves ``properties.name`` for a page's or product's name, so the default
    property list leaves it out; an operator who chose ``pii_fields`` keeps them for
    properties too (as before the two lists existed); ``pii_properties`` wins."""
    default = PrivacyConfig()
    assert "name" in default.pii_fields
    assert "name" not in default.property_pii_fields
    assert set(default.property_pii_fields) == set(default.pii_fields) - {"name"}
    chosen = PrivacyConfig(pii_fields=("email", "name"))
    assert chosen.property_pii_fields == ("email", "name")
    both = PrivacyConfig(pii_fields=("email", "name"), pii_properties=("email",))
    assert both.property_pii_fields == ("email",)
    toml = tmp_path / "auie.toml"
    toml.write_text('[privacy]\npii_fields = ["email", "name"]\n')
    loaded = load_settings(config_file=toml, environ={})
    assert loaded.privacy.property_pii_fields == ("email", "name")
    from_env = load_settings(environ={"AUIE_PRIVACY__PII_FIELDS": '["name"]'})
    assert from_env.privacy.property_pii_fields == ("name",)

"""Request bodies (gzip, content types) and the per-source rate limiter."""

from __future__ import annotations

import gzip

import pytest

from auie.collect.body import check_content_type, decode_json, decompress
from auie.collect.ratelimit import RateLimiter
from auie.collect.service import client_ip
from auie.errors import InvalidRequest, PayloadTooLarge, RateLimited, UnsupportedMediaType


def test_gzip_round_trip_within_limit() -> None:
    assert decompress(gzip.compress(b'{"a": 1}'), "gzip", 100) == b'{"a": 1}'
    assert decompress(b"plain", None, 100) == b"plain"


def test_gzip_over_limit_and_concatenated_members_are_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        decompress(gzip.compress(b"x" * 1000), "gzip", 999)
    with pytest.raises(InvalidRequest):
        decompress(gzip.compress(b"x" * 1000)[:-10], "gzip", 10_000)


@pytest.mark.parametrize("value", ["application/json", "text/plain; charset=utf-8", "", None])
def test_accepted_content_types(value: str | None) -> None:
    check_content_type(value)


@pytest.mark.parametrize("value", ["multipart/form-data", "text/plain; charset=utf-16"])
def test_refused_content_types(value: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        check_content_type(value)


@pytest.mark.parametrize("body", [b"1e400", b'{"a": 1e999}', b"\xff\xfe", b"   "])
def test_undecodable_json(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_json(body)
    assert info.value.code == "invalid_json"


def test_rate_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=20, clock=lambda: now[0])
    limiter.take("s", 20)
    with pytest.raises(RateLimited) as info:
        limiter.take("s", 5)
    assert info.value.retry_after == 1
    now[0] = 0.5
    limiter.take("s", 5)
    limiter.take("other", 20)
    RateLimiter(rate=0, burst=1).take("s", 10**9)


def test_client_ip_only_trusts_configured_proxies() -> None:
    import ipaddress

    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    assert client_ip("192.0.2.1", "198.51.100.1", trusted) == "192.0.2.1"
    assert client_ip("10.0.0.1", "198.51.100.1, 10.0.0.5", trusted) == "198.51.100.1"
    assert client_ip("10.0.0.1", "garbage", trusted) == "10.0.0.1"
    assert client_ip("10.0.0.1", "198.51.100.1", []) == "10.0.0.1"

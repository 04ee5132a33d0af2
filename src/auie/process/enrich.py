"""Enrichment: user agent → browser / OS / device (ua-parser, with the maintained regexes),
page URL → host, path and UTM parameters, optional IP truncation."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ua_parser import parse as parse_user_agent

_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_CAMPAIGN = {
    "source": "utm_source",
    "medium": "utm_medium",
    "name": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
}
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS"})


@functools.lru_cache(maxsize=20_000)
def user_agent(text: str) -> tuple[tuple[str, str | None], ...]:
    """(column, value) pairs for one user-agent string (cached: few distinct strings)."""
    result = parse_user_agent(text[:1024])
    browser = result.user_agent
    system = result.os
    device = result.device
    if device is not None and device.family == "Spider":
        kind = "bot"
    elif system is not None and system.family in _MOBILE_OS:
        kind = "tablet" if "ipad" in text.lower() or "tablet" in text.lower() else "mobile"
    elif system is not None:
        kind = "desktop"
    else:
        kind = None
    return (
        ("browser_name", browser.family if browser else None),
        ("browser_version", _version(browser.major, browser.minor) if browser else None),
        ("os_name", system.family if system else None),
        ("os_version", _version(system.major, system.minor) if system else None),
        ("device_type", kind),
        ("device_brand", device.brand if device else None),
        ("device_model", device.model if device else None),
    )


def _version(major: str | None, minor: str | None) -> str | None:
    if not major:
        return None
    return f"{major}.{minor}" if minor else major


def truncate_ip(value: str) -> str:
    """Keep the network part: a /24 of IPv4, a /48 of IPv6; anything else is dropped."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@functools.lru_cache(maxsize=20_000)
def _url_parts(url: str) -> tuple[tuple[str, str | None], ...]:
    """(column, value) pairs for one page URL (cached: pages and campaigns repeat)."""
    try:
        parts = urlsplit(url)
        # Most URLs have no UTM parameter: their query is not parsed ("%": an escaped name).
        wanted = "utm_" in parts.query or "%" in parts.query
        query = parse_qs(parts.query, keep_blank_values=False) if wanted else {}
    except ValueError:
        return ()
    found: list[tuple[str, str | None]] = [
        ("page_host", parts.hostname),
        ("page_path", parts.path or None),
    ]
    for name in _UTM:
        values = query.get(name)
        if values:
            found.append((name, values[0][:500]))
    return tuple(found)


class Enricher:
    """Adds derived columns to an event; may rewrite ``context.ip`` (truncation)."""

    def __init__(self, ip_truncation: str = "none") -> None:
        self.truncate = ip_truncation == "network"

    @staticmethod
    def warm_up() -> None:
        """Load ua-parser's regexes now (about half a second) rather than in the first
        batch after a (re)start."""
        parse_user_agent("Mozilla/5.0")

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        context = event.get("context")
        if not isinstance(context, dict):
            context = {}
        columns: dict[str, Any] = {}
        agent = context.get("userAgent")
        if isinstance(agent, str) and agent:
            columns.update(user_agent(agent))
        page = context.get("page")
        page = page if isinstance(page, dict) else {}
        properties = event.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        url = page.get("url") or properties.get("url")
        if isinstance(url, str) and url:
            columns.update(_url_parts(url[:4096]))
        campaign = context.get("campaign")
        if isinstance(campaign, dict):
            for key, column in _CAMPAIGN.items():
                value = campaign.get(key)
                if isinstance(value, str) and value and column not in columns:
                    columns[column] = value[:500]
        if self.truncate and isinstance(context.get("ip"), str):
            context["ip"] = truncate_ip(context["ip"])
        return columns

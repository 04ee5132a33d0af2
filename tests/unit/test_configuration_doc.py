"""docs/configuration.md names every setting there is, and no setting that is gone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from auie.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from _keys(kind, f"{prefix}{name}.")
        else:
            yield prefix + name


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [key for key in _keys(Settings) if f"`{key}`" not in text]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_no_documented_setting_is_unknown() -> None:
    table = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    known = set(_keys(Settings))
    named = {
        key
        for line in table
        for key in re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)`", line.split("|")[1])
    }
    assert named - known == set()

"""Search every byte of every file under a directory for a person's identifiers.

Raw bytes are not enough: Parquet pages are zstd-compressed, Iceberg manifests are
deflate-compressed Avro, zip archives and ``.npz`` files are deflated and DuckDB compresses
strings. So each file is searched as it is on disk *and* as decoded content:

* Parquet: every value of every column (and the footer, which is raw);
* Avro object container files (manifests, manifest lists): every block, decompressed;
* zip files (export archives, ``.npz``): every member, recursively;
* gzip: decompressed;
* DuckDB databases: every row of every table (opened read-only);
* everything else (SQLite databases with their ``-wal``/``-shm``, JSON, logs, models):
  raw bytes only, which is all they hold.

Each needle is searched as UTF-8, lower-cased, JSON-escaped (``\\u00eb``, both hex
cases) and as UTF-16 (both byte orders).
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from pyiceberg.avro.codecs import KNOWN_CODECS


def variants(value: str) -> set[bytes]:
    """The byte sequences a value may be stored as."""
    forms = {value, value.lower()}
    found: set[bytes] = set()
    for form in forms:
        found.add(form.encode("utf-8"))
        escaped = json.dumps(form)[1:-1]
        found.add(escaped.encode())
        found.add(_upper_escapes(escaped).encode())
        found.add(form.encode("utf-16-le"))
        found.add(form.encode("utf-16-be"))
    return {f for f in found if f}


def _upper_escapes(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text.startswith("\\u", i) and i + 6 <= len(text):
            out.append("\\u" + text[i + 2 : i + 6].upper())
            i += 6
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Hit:
    path: Path
    view: str
    needle: str

    def __str__(self) -> str:
        return f"{self.path} [{self.view}]: {self.needle!r}"


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


def _avro_blocks(data: bytes) -> Iterator[bytes]:
    """Decompressed blocks of an Avro object container file."""
    pos = 4
    metadata: dict[str, bytes] = {}
    while True:
        count, pos = _read_long(data, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            _size, pos = _read_long(data, pos)
        for _ in range(count):
            length, pos = _read_long(data, pos)
            key = data[pos : pos + length].decode()
            pos += length
            length, pos = _read_long(data, pos)
            metadata[key] = data[pos : pos + length]
            pos += length
    yield b"".join(metadata.values())
    sync = data[pos : pos + 16]
    pos += 16
    codec_name = metadata.get("avro.codec", b"null").decode()
    codec = KNOWN_CODECS.get(codec_name)  # type: ignore[call-overload]
    while pos < len(data):
        _count, pos = _read_long(data, pos)
        size, pos = _read_long(data, pos)
        block = data[pos : pos + size]
        pos += size
        assert data[pos : pos + 16] == sync, "corrupt avro block"
        pos += 16
        yield block if codec is None else codec.decompress(block)


def _parquet_values(data: bytes) -> bytes:
    table = pq.read_table(io.BytesIO(data))
    parts = [json.dumps(table.schema.to_string())]
    for column in table.columns:
        parts.append(json.dumps(column.to_pylist(), default=str, ensure_ascii=False))
    return "\n".join(parts).encode()


def _duckdb_values(path: Path) -> bytes:
    parts: list[str] = []
    connection = duckdb.connect(str(path), read_only=True)
    try:
        tables = connection.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, name in tables:
            rows = connection.execute(f'select * from "{schema}"."{name}"').fetchall()
            parts.append(json.dumps(rows, default=str, ensure_ascii=False))
    finally:
        connection.close()
    return "\n".join(parts).encode()


def views(name: str, data: bytes, path: Path | None = None) -> Iterator[tuple[str, bytes]]:
    """(view name, bytes) of one file: raw, then its decoded content."""
    yield "raw", data
    if data[:4] == b"PAR1" and data[-4:] == b"PAR1":
        yield "parquet values", _parquet_values(data)
    elif data[:4] == b"Obj\x01":
        for index, block in enumerate(_avro_blocks(data)):
            yield f"avro block {index}", block
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                for view, inner in views(member, archive.read(member)):
                    yield f"zip {member} {view}", inner
    elif data[:2] == b"\x1f\x8b":
        yield "gzip", gzip.decompress(data)
    elif path is not None and path.suffix == ".duckdb" and data[8:12] == b"DUCK":
        yield "duckdb rows", _duckdb_values(path)


def scan(root: Path, needles: Iterable[str]) -> list[Hit]:
    """Every (file, view, needle) where a variant of a needle occurs."""
    forms = {needle: variants(needle) for needle in needles if needle}
    hits: list[Hit] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        for view, content in views(path.name, data, path):
            lowered = content.lower()
            for needle, encodings in forms.items():
                if any(e in content or e.lower() in lowered for e in encodings):
                    hits.append(Hit(path, view, needle))
    return hits


def files_scanned(root: Path) -> dict[str, int]:
    """How many files of each kind a scan reads (to show it reads them all)."""
    kinds: dict[str, int] = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()[:16]
            kind = (
                "parquet"
                if data[:4] == b"PAR1"
                else "avro"
                if data[:4] == b"Obj\x01"
                else "zip"
                if data[:4] == b"PK\x03\x04"
                else "sqlite"
                if data.startswith(b"SQLite format")
                else "duckdb"
                if data[8:12] == b"DUCK"
                else path.suffix or "other"
            )
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds

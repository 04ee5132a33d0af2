"""Field encryption with crypto-shredding, and keyed hashing for pseudonyms.

* One **master key** (32 bytes) per instance, from ``privacy.master_key`` (base64; e.g.
  ``AUIE_PRIVACY__MASTER_KEY``) or the file ``privacy.master_key_file`` (created 0600 on
  first use). Other key managers plug in through :class:`Kms`.
* One **data key** per identifier of a person (an AES-256-GCM key), stored only *wrapped*
  (encrypted) by the master key, in ``person_keys``. Configured PII fields (email, phone,
  name, address by default) are encrypted with the key of the event's primary identifier,
  in the profile store and in the lake: ``enc:v1:<key id>:<base64 nonce‖ciphertext>``.
* **Erasure destroys the person's data keys**: every copy that escaped deletion (a backup,
  a snapshot kept for time travel) stays ciphertext forever.
* **Pseudonyms**: keyed BLAKE2b (a MAC) of identifiers with a key derived from the master
  key; used for the suppression list, data keys' owner column, and pseudonymous ids in
  marts and SQL.

Built on ``cryptography`` (AES-GCM, HKDF); nothing home-made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, delete, insert, select

from auie.errors import ConfigError
from auie.ids import utcnow
from auie.privacy.tables import person_keys

PREFIX = "enc:v1:"
ERASED = "[erased]"
_WRAP_AAD = b"auie person data key"


class Kms(Protocol):
    """Wraps and unwraps data keys (the local master key, or a cloud KMS)."""

    key_id: str

    def wrap(self, key: bytes) -> bytes: ...

    def unwrap(self, blob: bytes) -> bytes: ...


class LocalKms:
    """AES-GCM key wrapping under the local master key."""

    def __init__(self, master: bytes) -> None:
        if len(master) != 32:
            raise ConfigError("the master key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(master)
        self.key_id = hashlib.sha256(b"auie key id" + master).hexdigest()[:16]
        self.master = master

    def wrap(self, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, key, _WRAP_AAD)

    def unwrap(self, blob: bytes) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], _WRAP_AAD)

    def derive(self, purpose: str) -> bytes:
        """A sub-key for one purpose (pseudonyms, ...)."""
        return HKDF(hashes.SHA256(), 32, salt=None, info=purpose.encode()).derive(self.master)


def load_master_key(configured: str | None, path: Path) -> bytes:
    """The configured master key, else the key file (created on first use, mode 0600)."""
    if configured:
        try:
            return base64.b64decode(configured, validate=True)
        except ValueError:
            raise ConfigError("privacy.master_key is not base64") from None
    if path.exists():
        return base64.b64decode(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
    return key


class Pseudonymizer:
    """Keyed hashes of identifiers: stable per workspace, useless without the key."""

    def __init__(self, key: bytes) -> None:
        self._key = key[:64]

    def digest(self, workspace: str, value: str) -> str:
        data = f"{workspace}\x00{value}".encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._key, digest_size=16).hexdigest()

    def pseudonym(self, workspace: str, value: str | None) -> str | None:
        """``h_<hash>`` for an identifier (None stays None)."""
        return None if value is None else "h_" + self.digest(workspace, value)[:20]

    def unlinked(self, workspace: str, value: str | None) -> str | None:
        """``h_<hash>`` for an identifier in a row pseudonymised for want of ``analytics``
        consent: the hash of another text than :meth:`pseudonym`'s (:data:`UNLINKED` and
        the identifier), so SQL cannot join the row to the identifier's hash elsewhere
        (``identities.id_hash``, the pseudonymous views' ids) and so to the profile."""
        return None if value is None else self.pseudonym(workspace, UNLINKED + value)


#: What :meth:`Pseudonymizer.unlinked` puts before an identifier it hashes.
UNLINKED = "unlinked\x00"


class FieldCipher:
    """Encrypts field values with per-identifier data keys; see the module docstring."""

    def __init__(self, engine: Engine, kms: LocalKms, pseudonyms: Pseudonymizer) -> None:
        self.engine = engine
        self.kms = kms
        self.pseudonyms = pseudonyms
        self._by_person: dict[tuple[str, str], tuple[str, AESGCM]] = {}
        self._by_id: dict[str, AESGCM | None] = {}
        self._lock = threading.Lock()

    # -- keys -------------------------------------------------------------------------------

    def owner(self, workspace: str, node: str) -> str:
        """The keyed hash that names an identifier's key (the identifier is never stored)."""
        return self.pseudonyms.digest(workspace, node)

    def _key_for(self, workspace: str, node: str) -> tuple[str, AESGCM]:
        owner = self.owner(workspace, node)
        cached = self._by_person.get((workspace, owner))
        if cached is not None:
            return cached
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(
                select(person_keys.c.key_id, person_keys.c.wrapped).where(
                    person_keys.c.workspace_id == workspace, person_keys.c.person == owner
                )
            ).first()
            if row is None:
                raw = AESGCM.generate_key(bit_length=256)
                key_id = secrets.token_hex(8)
                conn.execute(
                    insert(person_keys).values(
                        workspace_id=workspace,
                        person=owner,
                        key_id=key_id,
                        wrapped=self.kms.wrap(raw),
                        master_key_id=self.kms.key_id,
                        created_at=utcnow(),
                    )
                )
            else:
                key_id, raw = row.key_id, self.kms.unwrap(row.wrapped)
        entry = (key_id, AESGCM(raw))
        self._by_person[(workspace, owner)] = entry
        self._by_id[key_id] = entry[1]
        return entry

    def ensure_keys(self, workspace: str, nodes: Iterable[str]) -> None:
        """Load or create the data keys of many identifiers in one transaction (a batch of
        events needs them all; one transaction per new identifier would be slow)."""
        owners = {self.owner(workspace, n): n for n in set(nodes)}
        missing = [o for o in owners if (workspace, o) not in self._by_person]
        if not missing:
            return
        with self._lock, self.engine.begin() as conn:
            found = {
                row.person: row
                for chunk in _chunks(missing)
                for row in conn.execute(
                    select(person_keys.c.person, person_keys.c.key_id, person_keys.c.wrapped).where(
                        person_keys.c.workspace_id == workspace, person_keys.c.person.in_(chunk)
                    )
                )
            }
            fresh = []
            for owner in missing:
                row = found.get(owner)
                if row is not None:
                    key_id, raw = row.key_id, self.kms.unwrap(row.wrapped)
                else:
                    raw, key_id = AESGCM.generate_key(bit_length=256), secrets.token_hex(8)
                    fresh.append(
                        {
                            "workspace_id": workspace,
                            "person": owner,
                            "key_id": key_id,
                            "wrapped": self.kms.wrap(raw),
                            "master_key_id": self.kms.key_id,
                            "created_at": utcnow(),
                        }
                    )
                aead = AESGCM(raw)
                self._by_person[(workspace, owner)] = (key_id, aead)
                self._by_id[key_id] = aead
            if fresh:
                conn.execute(insert(person_keys), fresh)

    def _key_by_id(self, key_id: str) -> AESGCM | None:
        if key_id in self._by_id:
            return self._by_id[key_id]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(person_keys.c.wrapped).where(person_keys.c.key_id == key_id)
            ).first()
        aead = None if row is None else AESGCM(self.kms.unwrap(row.wrapped))
        if aead is not None:
            self._by_id[key_id] = aead
        return aead

    def shred(self, workspace: str, nodes: Iterable[str]) -> int:
        """Destroy the data keys of these identifiers; returns how many were destroyed."""
        owners = [self.owner(workspace, n) for n in nodes]
        with self._lock, self.engine.begin() as conn:
            rows = conn.execute(
                select(person_keys.c.key_id).where(
                    person_keys.c.workspace_id == workspace, person_keys.c.person.in_(owners)
                )
            ).all()
            conn.execute(
                delete(person_keys).where(
                    person_keys.c.workspace_id == workspace, person_keys.c.person.in_(owners)
                )
            )
        for owner in owners:
            self._by_person.pop((workspace, owner), None)
        for row in rows:
            self._by_id[row.key_id] = None
        return len(rows)

    def forget_cache(self) -> None:
        """Drop cached keys (after another process shredded some)."""
        with self._lock:
            self._by_person.clear()
            self._by_id.clear()

    # -- values -----------------------------------------------------------------------------

    def encrypt(self, workspace: str, node: str, value: Any) -> str:
        key_id, aead = self._key_for(workspace, node)
        nonce = os.urandom(12)
        plain = json.dumps(value, separators=(",", ":")).encode()
        sealed = aead.encrypt(nonce, plain, f"{workspace}:{key_id}".encode())
        return f"{PREFIX}{key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt_all(self, workspace: str, value: Any) -> Any:
        """``value`` with every ciphertext string in it (at any depth of its objects and
        arrays) decrypted."""
        if isinstance(value, dict):
            return {k: self.decrypt_all(workspace, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.decrypt_all(workspace, v) for v in value]
        return self.decrypt(workspace, value)

    def decrypt(self, workspace: str, value: Any) -> Any:
        """The plain value; :data:`ERASED` when its key was destroyed; non-ciphertext as is."""
        if not is_encrypted(value):
            return value
        key_id, _, payload = value[len(PREFIX) :].partition(":")
        aead = self._key_by_id(key_id)
        if aead is None:
            return ERASED
        blob = base64.b64decode(payload)
        try:
            plain = aead.decrypt(blob[:12], blob[12:], f"{workspace}:{key_id}".encode())
        except InvalidTag:
            return ERASED
        return json.loads(plain)


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def holds_ciphertext(value: Any) -> bool:
    """Whether ``value`` is, or holds at any depth of its objects and arrays, a ciphertext."""
    if isinstance(value, dict):
        return any(holds_ciphertext(v) for v in value.values())
    if isinstance(value, list):
        return any(holds_ciphertext(v) for v in value)
    return is_encrypted(value)

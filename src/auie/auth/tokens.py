"""JWT access tokens signed with asymmetric keys (PyJWT + cryptography), and key rotation.

Signing keys live in the metadata database. The newest key that is not retired signs;
every stored key verifies and is published at ``/.well-known/jwks.json``. Rotation adds
a key and retires the previous signer, which keeps verifying the tokens it signed until
they expire and ``auie signing-keys prune`` removes it. Running servers reload the key
set every ``auth.key_refresh_seconds`` (and at once on an unknown ``kid``, at most once
a second), so rotation needs no restart.

A token carries ``iss``, ``aud``, ``sub`` (the client id), ``ws`` (the workspace), ``scope``
(space separated), ``iat``, ``nbf``, ``exp`` and ``jti``. Verification accepts only the
algorithm of the key named by ``kid``, so ``alg=none`` and algorithm confusion fail.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import Engine, delete, insert, select, update

from auie.auth.clients import Client
from auie.auth.scopes import format_scopes, parse_scopes
from auie.auth.tables import signing_keys
from auie.config import AuthConfig
from auie.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from auie.ids import utcnow

_LEEWAY_SECONDS = 5
_MISS_RELOAD_SECONDS = 1.0
#: A verified token is trusted again without checking its signature for this long (at
#: most until it expires): ECDSA verification is most of an API call's CPU otherwise.
_VERIFIED_CACHE_SECONDS = 30.0
_VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    created_at: datetime
    retired_at: datetime | None
    public_jwk: dict[str, Any]
    private_key: Any
    public_key: Any


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    workspace_id: str
    client_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(
                f"this token lacks the {scope!r} scope",
                code="insufficient_scope",
                client=self.client_id,
                workspace=self.workspace_id,
            )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


def _generate(algorithm: str) -> tuple[Any, dict[str, Any]]:
    private: Any
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise InvalidRequest(f"unsupported signing algorithm {algorithm!r}")
    return private, jwk


class SigningKeyStore:
    """Signing keys in the metadata database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self) -> list[SigningKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(signing_keys).order_by(signing_keys.c.created_at)).all()
        keys = []
        for row in rows:
            private = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
            keys.append(
                SigningKey(
                    kid=row.kid,
                    algorithm=row.algorithm,
                    created_at=row.created_at,
                    retired_at=row.retired_at,
                    public_jwk=json.loads(row.public_jwk),
                    private_key=private,
                    public_key=private.public_key(),
                )
            )
        return keys

    def create(self, algorithm: str) -> str:
        """Add a signing key and retire the current signer(s); returns the new ``kid``."""
        private, jwk = _generate(algorithm)
        kid = f"{utcnow():%Y%m%d}-{secrets.token_hex(4)}"
        jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(signing_keys)
                .where(signing_keys.c.retired_at.is_(None))
                .values(retired_at=now)
            )
            conn.execute(
                insert(signing_keys).values(
                    kid=kid,
                    algorithm=algorithm,
                    private_pem=pem,
                    public_jwk=json.dumps(jwk),
                    created_at=now,
                    retired_at=None,
                )
            )
        return kid

    def ensure(self, algorithm: str) -> None:
        """Create a first key if there is no active signer."""
        if not any(key.retired_at is None for key in self.load()):
            self.create(algorithm)

    def prune(self, retired_before: datetime) -> list[str]:
        """Delete keys retired before the given time; returns their ``kid``s."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(signing_keys.c.kid).where(signing_keys.c.retired_at < retired_before)
            ).all()
            kids = [row[0] for row in rows]
            if kids:
                conn.execute(delete(signing_keys).where(signing_keys.c.kid.in_(kids)))
        return kids


class TokenService:
    """Issues and verifies access tokens with a key ring reloaded from the store."""

    def __init__(self, store: SigningKeyStore, config: AuthConfig) -> None:
        self.store = store
        self.config = config
        self._keys: dict[str, SigningKey] = {}
        self._signer: SigningKey | None = None
        self._loaded_at = 0.0
        self._miss_at = 0.0
        self._lock = threading.Lock()
        self._verified: dict[str, tuple[Principal, float]] = {}
        self.store.ensure(config.signing_algorithm)
        self.reload()

    def reload(self) -> None:
        keys = self.store.load()
        active = [key for key in keys if key.retired_at is None]
        with self._lock:
            removed = self._keys.keys() - {key.kid for key in keys}
            self._keys = {key.kid: key for key in keys}
            self._signer = active[-1] if active else None
            self._loaded_at = time.monotonic()
            if removed:  # tokens of a pruned key must not stay trusted from the cache
                self._verified.clear()

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._loaded_at > self.config.key_refresh_seconds:
            self.reload()

    def jwks(self) -> dict[str, Any]:
        self._maybe_reload()
        return {"keys": [key.public_jwk for key in self._keys.values()]}

    def issue(self, client: Client, requested: str | None = None) -> IssuedToken:
        """A token for the client with the requested scopes; all it may have when none are
        requested (``requested`` None, empty or blank: RFC 6749 3.3 lets the server pick a
        default, and a present but blank ``scope`` means what an omitted one does)."""
        scopes = parse_scopes(requested) if requested and requested.strip() else client.scopes
        if not scopes <= client.scopes:
            extra = format_scopes(scopes - client.scopes)
            raise InvalidRequest(f"client may not ask for scope(s) {extra}", code="invalid_scope")
        self._maybe_reload()
        signer = self._signer
        if signer is None:
            self.store.ensure(self.config.signing_algorithm)
            self.reload()
            signer = self._signer
            assert signer is not None
        now = utcnow()
        ttl = self.config.token_ttl_seconds
        scope = format_scopes(scopes)
        claims = {
            "iss": self.config.issuer,
            "aud": self.config.audience,
            "sub": client.id,
            "ws": client.workspace_id,
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=ttl),
            "jti": secrets.token_hex(12),
        }
        token = jwt.encode(
            claims, signer.private_key, algorithm=signer.algorithm, headers={"kid": signer.kid}
        )
        return IssuedToken(token, ttl, scope)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`AuthenticationFailed` otherwise."""
        self._maybe_reload()
        cached = self._verified.get(token)
        now = time.time()
        if cached is not None and cached[1] > now:
            return cached[0]
        principal, expires = self._verify(token)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, min(expires, now + _VERIFIED_CACHE_SECONDS))
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("malformed access token", code="invalid_token") from None
        key = self._key(header.get("kid"))
        if key is None or header.get("alg") != key.algorithm:
            raise AuthenticationFailed(
                "access token signed by an unknown key", code="invalid_token"
            )
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("access token expired", code="token_expired") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(
                f"invalid access token: {exc}", code="invalid_token"
            ) from None
        workspace, scope = claims.get("ws"), claims.get("scope")
        if not isinstance(workspace, str) or not isinstance(scope, str):
            raise AuthenticationFailed("access token lacks ws or scope", code="invalid_token")
        try:
            scopes = parse_scopes(scope)
        except InvalidRequest:
            raise AuthenticationFailed(
                "access token has unknown scopes", code="invalid_token"
            ) from None
        return Principal(workspace, str(claims["sub"]), scopes), float(claims["exp"])

    def _key(self, kid: object) -> SigningKey | None:
        if not isinstance(kid, str):
            return None
        self._maybe_reload()
        key = self._keys.get(kid)
        now = time.monotonic()
        if key is None and now - self._miss_at > _MISS_RELOAD_SECONDS:
            self._miss_at = now
            self.reload()
            key = self._keys.get(kid)
        return key

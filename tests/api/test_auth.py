"""OAuth2 client credentials, the JWKS, attacks on bearer tokens and key rotation, in process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from auie.auth.scopes import ALL_SCOPES
from auie.auth.tokens import SigningKey, TokenService
from auie.ids import utcnow
from auie.runtime import Bootstrap, Runtime
from conftest import App
from helpers import Server, basic, bearer, get_token

GRANT = {"grant_type": "client_credentials"}
PROTECTED = "/v1/admin/workspace"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def token_request(client: TestClient, form: dict[str, str], **headers: str) -> Any:
    return client.post("/oauth/token", data=form, headers=headers)


def assert_oauth_error(reply: Any, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["code"] == code
    assert body["message"]
    # RFC 6749 section 5.2 names the same two fields error / error_description.
    assert body["error"] == code
    assert body["error_description"] == body["message"]
    assert set(body) == {"code", "message", "error", "error_description"}


def assert_refused(reply: Any, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == code
    assert body["message"]
    if status == 401:
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def signer(runtime: Runtime) -> SigningKey:
    """The key the instance signs with (the newest one not retired)."""
    return [key for key in runtime.signing_keys.load() if key.retired_at is None][-1]


def claims_for(runtime: Runtime, boot: Bootstrap, **changes: Any) -> dict[str, Any]:
    """Claims exactly like the ones the server issues; ``changes`` overrides (None drops)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": runtime.settings.auth.issuer,
        "aud": runtime.settings.auth.audience,
        "sub": boot.client_id,
        "ws": boot.workspace,
        "scope": "admin",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": secrets.token_hex(12),
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def sign(runtime: Runtime, claims: dict[str, Any]) -> str:
    """A token signed with the instance's real private key, as only AUIE could make it."""
    key = signer(runtime)
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})


# -- POST /oauth/token ------------------------------------------------------------------


def check_issued(reply: Any, boot: Bootstrap, scope: str) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["Pragma"] == "no-cache"
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == scope
    claims: dict[str, Any] = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == boot.client_id
    assert claims["ws"] == boot.workspace
    assert claims["scope"] == scope
    assert claims["iss"] == "auie"
    assert claims["aud"] == "auie"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["nbf"] <= int(time.time()) + 1
    return claims


def test_token_with_http_basic(client: TestClient, boot: Bootstrap) -> None:
    reply = token_request(client, GRANT, **basic(boot.client_id, boot.client_secret))
    check_issued(reply, boot, " ".join(ALL_SCOPES))


def test_token_with_form_fields(client: TestClient, boot: Bootstrap) -> None:
    form = {**GRANT, "client_id": boot.client_id, "client_secret": boot.client_secret}
    reply = token_request(client, form)
    check_issued(reply, boot, " ".join(ALL_SCOPES))


def test_tokens_are_unique(client: TestClient, boot: Bootstrap) -> None:
    first = get_token(client, boot.client_id, boot.client_secret)
    second = get_token(client, boot.client_id, boot.client_secret)
    assert first != second
    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in (first, second)}
    assert len(jtis) == 2


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        ("admin", "admin"),
        ("admin ingest", "ingest admin"),
        ("decide", "decide"),
        # A present but empty or blank scope means what an omitted one does: every scope.
        ("", None),
        ("   ", None),
        (" \t ", None),
    ],
)
def test_requesting_a_subset_of_scopes(
    client: TestClient, boot: Bootstrap, requested: str, granted: str | None
) -> None:
    reply = token_request(
        client, {**GRANT, "scope": requested}, **basic(boot.client_id, boot.client_secret)
    )
    check_issued(reply, boot, granted or " ".join(ALL_SCOPES))


def test_token_ttl_follows_the_settings(make_app: Callable[..., App]) -> None:
    app = make_app(**{"auth.token_ttl_seconds": 60})
    reply = token_request(app.client, GRANT, **basic(app.boot.client_id, app.boot.client_secret))
    assert reply.json()["expires_in"] == 60
    claims = jwt.decode(reply.json()["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60


def test_unknown_scope_is_invalid_scope(client: TestClient, boot: Bootstrap) -> None:
    reply = token_request(
        client, {**GRANT, "scope": "admin root"}, **basic(boot.client_id, boot.client_secret)
    )
    assert_oauth_error(reply, 400, "invalid_scope")
    assert "root" in reply.json()["message"]


def test_scope_the_client_does_not_have_is_invalid_scope(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    ingest_only = runtime.clients.create(boot.workspace, "sdk", ["ingest"])
    auth = basic(ingest_only.client.id, ingest_only.secret)
    reply = token_request(client, {**GRANT, "scope": "ingest admin"}, **auth)
    assert_oauth_error(reply, 400, "invalid_scope")
    assert "admin" in reply.json()["message"]
    granted = token_request(client, {**GRANT, "scope": "ingest"}, **auth)
    assert granted.status_code == 200
    assert granted.json()["scope"] == "ingest"


@pytest.mark.parametrize("case", ["wrong secret", "unknown client", "revoked client", "none"])
def test_bad_client_credentials_are_invalid_client(
    client: TestClient, boot: Bootstrap, runtime: Runtime, case: str
) -> None:
    headers: dict[str, str] = {}
    if case == "wrong secret":
        headers = basic(boot.client_id, boot.client_secret + "x")
    elif case == "unknown client":
        headers = basic("cl_000000000000", boot.client_secret)
    elif case == "revoked client":
        runtime.clients.revoke(boot.client_id)
        headers = basic(boot.client_id, boot.client_secret)
    reply = token_request(client, GRANT, **headers)
    assert_oauth_error(reply, 401, "invalid_client")
    if headers:
        # RFC 6749 5.2: a client that used the Authorization header gets a challenge back.
        assert reply.headers["WWW-Authenticate"].startswith("Basic")
    assert "access_token" not in reply.json()


def test_revoked_client_refused_with_form_credentials_too(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    runtime.clients.revoke(boot.client_id)
    form = {**GRANT, "client_id": boot.client_id, "client_secret": boot.client_secret}
    assert_oauth_error(token_request(client, form), 401, "invalid_client")


@pytest.mark.parametrize(
    "fields", [("client_id", "client_secret"), ("client_id",), ("client_secret",)]
)
def test_basic_and_form_client_authentication_together_are_refused(
    client: TestClient, boot: Bootstrap, runtime: Runtime, fields: tuple[str, ...]
) -> None:
    """RFC 6749 2.3: a client uses one authentication method per request."""
    given = {"client_id": boot.client_id, "client_secret": boot.client_secret}
    form = {**GRANT, **{name: given[name] for name in fields}}
    reply = token_request(client, form, **basic(boot.client_id, boot.client_secret))
    assert_oauth_error(reply, 400, "invalid_request")
    assert "not both" in reply.json()["message"]
    assert runtime.audit.entries(None, action="token.issued") == []


@pytest.mark.parametrize(
    "authorization",
    ["Bearer abc", "Basic !!!not-base64!!!", "Basic " + b64url(b"no-colon")],
)
def test_malformed_client_authentication(
    client: TestClient, boot: Bootstrap, authorization: str
) -> None:
    reply = token_request(client, GRANT, Authorization=authorization)
    assert_oauth_error(reply, 401, "invalid_client")


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "password", "username": "u", "password": "p"},
        {"grant_type": "authorization_code", "code": "x"},
        {"grant_type": "client_credentials "},
        {"scope": "admin"},
    ],
)
def test_other_grant_types_are_unsupported(
    client: TestClient, boot: Bootstrap, form: dict[str, str]
) -> None:
    reply = token_request(client, form, **basic(boot.client_id, boot.client_secret))
    assert_oauth_error(reply, 400, "unsupported_grant_type")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_token_request_must_be_a_form(
    client: TestClient, boot: Bootstrap, content_type: str | None
) -> None:
    headers = basic(boot.client_id, boot.client_secret)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = json.dumps(GRANT) if content_type == "application/json" else "grant_type=x"
    reply = client.post("/oauth/token", content=body, headers=headers)
    assert_oauth_error(reply, 415, "unsupported_media_type")


def test_repeated_form_parameters_are_refused(client: TestClient, boot: Bootstrap) -> None:
    reply = client.post(
        "/oauth/token",
        content="grant_type=client_credentials&scope=admin&scope=ingest",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            **basic(boot.client_id, boot.client_secret),
        },
    )
    assert_oauth_error(reply, 400, "invalid_request")


# -- JWKS: anyone can verify AUIE's tokens ----------------------------------------------


def verify_as_third_party(client: TestClient, token: str) -> dict[str, Any]:
    """What a resource server of another team does: fetch the JWKS, pick the key by kid,
    verify with PyJWT. Nothing of AUIE's code is used."""
    jwks = client.get("/.well-known/jwks.json").json()
    header = jwt.get_unverified_header(token)
    [jwk] = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    key = jwt.PyJWK(jwk)
    assert key.algorithm_name == header["alg"] == jwk["alg"]
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=[jwk["alg"]], audience="auie", issuer="auie"
    )
    return claims


def test_jwks_publishes_the_signing_key(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    reply = client.get("/.well-known/jwks.json")
    assert reply.status_code == 200
    [published] = reply.json()["keys"]
    assert published["alg"] == "ES256"
    assert published["use"] == "sig"
    assert published["kty"] == "EC"
    assert published["crv"] == "P-256"
    assert published["kid"] == signer(runtime).kid
    assert "d" not in published  # never the private part
    token = get_token(client, boot.client_id, boot.client_secret)
    assert jwt.get_unverified_header(token)["kid"] == published["kid"]
    # The PyJWKSet a library would build from the document holds the same key.
    assert jwt.PyJWKSet.from_dict(reply.json())[published["kid"]].algorithm_name == "ES256"


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA", "RS256"])
def test_a_third_party_can_verify_our_tokens(make_app: Callable[..., App], algorithm: str) -> None:
    app = make_app(**{"auth.signing_algorithm": algorithm})
    token = get_token(app.client, app.boot.client_id, app.boot.client_secret, "admin")
    claims = verify_as_third_party(app.client, token)
    assert claims["sub"] == app.boot.client_id
    assert claims["ws"] == app.boot.workspace
    assert claims["scope"] == "admin"
    [published] = app.client.get("/.well-known/jwks.json").json()["keys"]
    assert published["alg"] == algorithm
    assert "d" not in published
    assert app.client.get(PROTECTED, headers=bearer(token)).status_code == 200


def test_a_third_party_rejects_a_tampered_token(client: TestClient, boot: Bootstrap) -> None:
    token = get_token(client, boot.client_id, boot.client_secret, "ingest")
    header, payload, signature = token.split(".")
    claims = json.loads(unb64url(payload))
    forged = f"{header}.{b64url_json({**claims, 'scope': 'ingest admin'})}.{signature}"
    with pytest.raises(jwt.InvalidSignatureError):
        verify_as_third_party(client, forged)


# -- attacks on a bearer-protected endpoint ---------------------------------------------


def test_a_hand_signed_token_with_the_real_key_is_accepted(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    """The control for the attacks below: our forging helper makes valid tokens, so each
    attack fails for the one thing it changes."""
    reply = client.get(PROTECTED, headers=bearer(sign(runtime, claims_for(runtime, boot))))
    assert reply.status_code == 200, reply.text
    assert reply.json()["id"] == boot.workspace


def _issued(client: TestClient, boot: Bootstrap, scope: str = "admin") -> str:
    return get_token(client, boot.client_id, boot.client_secret, scope)


def _tampered(field: str, value: Any) -> Callable[[TestClient, Bootstrap, Runtime], str]:
    def make(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
        header, payload, signature = _issued(client, boot, "ingest").split(".")
        claims = json.loads(unb64url(payload))
        claims[field] = value
        return f"{header}.{b64url_json(claims)}.{signature}"

    return make


def _alg_none(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": signer(runtime).kid}
    return f"{b64url_json(header)}.{b64url_json(claims_for(runtime, boot))}."


def _alg_none_no_kid(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
    return f"{b64url_json({'alg': 'none'})}.{b64url_json(claims_for(runtime, boot))}."


def _hs256_with_public_key(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
    """Algorithm confusion: HMAC "signed" with the public key, which everyone knows."""
    key = signer(runtime)
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims_for(runtime, boot))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _hs256_with_published_jwk(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
    """The same confusion with the JWKS entry's JSON as the HMAC secret."""
    key = signer(runtime)
    secret = json.dumps(key.public_jwk).encode()
    header = {"alg": "HS256", "kid": key.kid}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims_for(runtime, boot))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _foreign_key_known_kid(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
    attacker = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(
        claims_for(runtime, boot), attacker, algorithm="ES256", headers={"kid": signer(runtime).kid}
    )


def _foreign_key_own_kid(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
    attacker = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(
        claims_for(runtime, boot), attacker, algorithm="ES256", headers={"kid": "attacker-1"}
    )


def _no_kid(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
    key = signer(runtime)
    return jwt.encode(claims_for(runtime, boot), key.private_key, algorithm=key.algorithm)


def _signed(**changes: Any) -> Callable[[TestClient, Bootstrap, Runtime], str]:
    def make(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
        return sign(runtime, claims_for(runtime, boot, **changes))

    return make


def _expired(client: TestClient, boot: Bootstrap, runtime: Runtime) -> str:
    now = int(time.time())
    return sign(runtime, claims_for(runtime, boot, iat=now - 1000, nbf=now - 1000, exp=now - 60))


def _literal(value: str) -> Callable[[TestClient, Bootstrap, Runtime], str]:
    return lambda client, boot, runtime: value


ATTACKS: dict[str, tuple[Callable[[TestClient, Bootstrap, Runtime], str], int, str]] = {
    "malformed": (_literal("not-a-jwt"), 401, "invalid_token"),
    "three garbage parts": (_literal("abc.def.ghi"), 401, "invalid_token"),
    "empty parts": (_literal(".."), 401, "invalid_token"),
    "header not an object": (_literal(f"{b64url_json([1])}.e30.sig"), 401, "invalid_token"),
    "expired": (_expired, 401, "token_expired"),
    "not yet valid": (_signed(nbf=int(time.time()) + 3600), 401, "invalid_token"),
    "tampered scope": (_tampered("scope", "ingest admin"), 401, "invalid_token"),
    "tampered workspace": (_tampered("ws", "ws_000000000000"), 401, "invalid_token"),
    "tampered expiry": (_tampered("exp", int(time.time()) + 10**8), 401, "invalid_token"),
    "alg none": (_alg_none, 401, "invalid_token"),
    "alg none without kid": (_alg_none_no_kid, 401, "invalid_token"),
    "hs256 with public key": (_hs256_with_public_key, 401, "invalid_token"),
    "hs256 with published jwk": (_hs256_with_published_jwk, 401, "invalid_token"),
    "unknown key with known kid": (_foreign_key_known_kid, 401, "invalid_token"),
    "unknown key and kid": (_foreign_key_own_kid, 401, "invalid_token"),
    "real key without kid": (_no_kid, 401, "invalid_token"),
    "wrong audience": (_signed(aud="someone-else"), 401, "invalid_token"),
    "wrong issuer": (_signed(iss="https://evil.example"), 401, "invalid_token"),
    "no expiry": (_signed(exp=None), 401, "invalid_token"),
    "no audience": (_signed(aud=None), 401, "invalid_token"),
    "no workspace": (_signed(ws=None), 401, "invalid_token"),
    "workspace not a string": (_signed(ws=["a", "b"]), 401, "invalid_token"),
    "unknown scope claim": (_signed(scope="admin root"), 401, "invalid_token"),
    "no scope claim": (_signed(scope=None), 401, "invalid_token"),
    "wrong scope": (lambda c, b, r: _issued(c, b, "ingest decide"), 403, "insufficient_scope"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_token_attacks_are_refused(
    client: TestClient, boot: Bootstrap, runtime: Runtime, attack: str
) -> None:
    make, status, code = ATTACKS[attack]
    reply = client.get(PROTECTED, headers=bearer(make(client, boot, runtime)))
    assert_refused(reply, status, code)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Token abc"}],
)
def test_missing_token(client: TestClient, boot: Bootstrap, headers: dict[str, str]) -> None:
    assert_refused(client.get(PROTECTED, headers=headers), 401, "missing_token")


def test_write_key_is_not_a_bearer_token(client: TestClient, boot: Bootstrap) -> None:
    assert_refused(client.get(PROTECTED, headers=basic(boot.write_key)), 401, "missing_token")
    assert_refused(client.get(PROTECTED, headers=bearer(boot.write_key)), 401, "invalid_token")


def test_client_with_only_ingest_cannot_administer(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    sdk = runtime.clients.create(boot.workspace, "sdk", ["ingest"])
    token = get_token(client, sdk.client.id, sdk.secret)
    for method, path in [
        ("GET", PROTECTED),
        ("GET", "/v1/admin/sources"),
        ("GET", "/v1/admin/clients"),
        ("DELETE", f"/v1/admin/clients/{boot.client_id}"),
    ]:
        reply = client.request(method, path, headers=bearer(token))
        assert_refused(reply, 403, "insufficient_scope")
    # The admin client is untouched.
    assert get_token(client, boot.client_id, boot.client_secret)


def test_another_workspaces_token_speaks_only_for_its_workspace(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    other = runtime.tenancy.create_workspace("other")
    other_admin = runtime.clients.create(other.id, "admin", ["admin"])
    token = get_token(client, other_admin.client.id, other_admin.secret)
    reply = client.get(PROTECTED, headers=bearer(token))
    assert reply.status_code == 200
    assert reply.json()["id"] == other.id
    assert_refused(
        client.delete(f"/v1/admin/clients/{boot.client_id}", headers=bearer(token)),
        404,
        "not_found",
    )
    # A token of the other workspace whose ws claim is rewritten to ours is a forgery.
    header, payload, signature = token.split(".")
    claims = {**json.loads(unb64url(payload)), "ws": boot.workspace}
    forged = f"{header}.{b64url_json(claims)}.{signature}"
    assert_refused(client.get(PROTECTED, headers=bearer(forged)), 401, "invalid_token")
    assert get_token(client, boot.client_id, boot.client_secret)


def test_token_of_a_revoked_client_lives_until_it_expires(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    """Documented behaviour: revoking stops new tokens; issued ones expire within the TTL."""
    token = get_token(client, boot.client_id, boot.client_secret)
    runtime.clients.revoke(boot.client_id)
    assert client.get(PROTECTED, headers=bearer(token)).status_code == 200
    reply = token_request(client, GRANT, **basic(boot.client_id, boot.client_secret))
    assert_oauth_error(reply, 401, "invalid_client")


# -- key rotation without downtime ------------------------------------------------------


def test_key_rotation_without_downtime(make_app: Callable[..., App]) -> None:
    app = make_app(**{"auth.key_refresh_seconds": 0.1})
    keys = app.runtime.signing_keys
    token_a = _issued(app.client, app.boot)
    kid_a = jwt.get_unverified_header(token_a)["kid"]

    kid_b = keys.create("ES256")
    assert kid_b != kid_a
    # The old key still verifies, at once and after the running app reloaded its keys.
    assert app.client.get(PROTECTED, headers=bearer(token_a)).status_code == 200
    time.sleep(0.25)
    token_b = _issued(app.client, app.boot)
    assert jwt.get_unverified_header(token_b)["kid"] == kid_b
    for token in (token_a, token_b):
        assert app.client.get(PROTECTED, headers=bearer(token)).status_code == 200
        verify_as_third_party(app.client, token)
    published = {key["kid"] for key in app.client.get("/.well-known/jwks.json").json()["keys"]}
    assert published == {kid_a, kid_b}

    # Prune the retired key (as `auie signing-keys prune` does once its tokens expired).
    assert keys.prune(utcnow() + timedelta(seconds=1)) == [kid_a]
    time.sleep(0.25)
    assert_refused(app.client.get(PROTECTED, headers=bearer(token_a)), 401, "invalid_token")
    assert app.client.get(PROTECTED, headers=bearer(token_b)).status_code == 200
    published = {key["kid"] for key in app.client.get("/.well-known/jwks.json").json()["keys"]}
    assert published == {kid_b}


def test_unknown_kid_makes_a_running_app_reload_at_once(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    """Another instance (or the CLI) rotated and signs with a key this app has not loaded
    yet; the default 30 s refresh is not waited for."""
    assert runtime.settings.auth.key_refresh_seconds == 30
    assert client.get(PROTECTED, headers=bearer(_issued(client, boot))).status_code == 200
    new_kid = runtime.signing_keys.create("ES256")
    other_instance = TokenService(runtime.signing_keys, runtime.settings.auth)
    admin = runtime.clients.authenticate(boot.client_id, boot.client_secret)
    token = other_instance.issue(admin, "admin").access_token
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    reply = client.get(PROTECTED, headers=bearer(token))
    assert reply.status_code == 200, reply.text


def test_prune_keeps_keys_retired_recently_and_the_signer(
    client: TestClient, boot: Bootstrap, runtime: Runtime
) -> None:
    first = signer(runtime).kid
    second = runtime.signing_keys.create("ES256")
    assert runtime.signing_keys.prune(utcnow() - timedelta(minutes=16)) == []
    assert runtime.signing_keys.prune(utcnow() + timedelta(seconds=1)) == [first]
    assert [key.kid for key in runtime.signing_keys.load()] == [second]


@pytest.mark.slow
def test_pyjwkclient_verifies_the_tokens_of_a_real_server(server: Server) -> None:
    """PyJWT's own JWKS client, over HTTP, against ``auie serve``."""
    credentials = server.credentials
    with httpx.Client(base_url=server.url) as http:
        token = get_token(http, credentials["clientId"], credentials["clientSecret"], "admin")
    jwks_client = jwt.PyJWKClient(f"{server.url}/.well-known/jwks.json", cache_keys=False)
    key = jwks_client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="auie", issuer="auie")
    assert claims["ws"] == credentials["workspace"]
    assert claims["scope"] == "admin"

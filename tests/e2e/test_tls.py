"""``auie serve --tls-cert --tls-key``: HTTPS with a self-signed certificate for 127.0.0.1,
no plain HTTP on that port, and a clear refusal of half a TLS configuration."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from helpers import AUIE, Server, basic, bearer, free_port, get_token

pytestmark = pytest.mark.slow


@dataclass
class Certificate:
    cert: Path
    key: Path


def make_certificate(directory: Path, name: str = "auie") -> Certificate:
    """A self-signed P-256 certificate for 127.0.0.1 (IP SAN) and localhost, valid a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Certificate(cert_path, key_path)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AUIE_")}


def start_https(data_dir: Path, certificate: Certificate, timeout: float = 60) -> Server:
    """``auie serve`` with the certificate, ready once ``/readyz`` answers over HTTPS."""
    port = free_port()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"serve-tls-{port}.log"
    args = ["--tls-cert", str(certificate.cert), "--tls-key", str(certificate.key)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [AUIE, "serve", "--data-dir", str(data_dir), "--port", str(port), *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=data_dir.parent,
        )
    server = Server(data_dir, port, process, log_path)
    trust = ssl.create_default_context(cafile=str(certificate.cert))
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"auie serve exited: {log_path.read_text()}")
            try:
                reply = httpx.get(f"https://127.0.0.1:{port}/readyz", verify=trust, timeout=2)
                if reply.status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"auie serve (TLS) not ready: {log_path.read_text()}")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path / "tls")


@pytest.fixture
def https_server(tmp_path: Path, certificate: Certificate) -> Iterator[Server]:
    server = start_https(tmp_path / "data", certificate)
    yield server
    server.stop()


def test_https_serves_the_api(https_server: Server, certificate: Certificate) -> None:
    base = f"https://127.0.0.1:{https_server.port}"
    trust = ssl.create_default_context(cafile=str(certificate.cert))
    credentials = https_server.credentials
    with httpx.Client(base_url=base, verify=trust, timeout=10) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        assert health.http_version == "HTTP/1.1"

        event = {"userId": "tls-user", "event": "Encrypted", "properties": {"over": "https"}}
        reply = client.post("/v1/track", json=event, headers=basic(credentials["writeKey"]))
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"success": True, "accepted": 1, "duplicates": 0, "rejected": []}

        # The OAuth2 flow works the same over HTTPS.
        token = get_token(client, credentials["clientId"], credentials["clientSecret"], "admin")
        workspace = client.get("/v1/admin/workspace", headers=bearer(token))
        assert workspace.status_code == 200, workspace.text
        assert workspace.json()["id"] == credentials["workspace"]

    # The server names itself with the scheme it serves.
    assert f"https://127.0.0.1:{https_server.port}" in https_server.log_path.read_text()


def test_plain_http_on_the_https_port_fails(https_server: Server) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{https_server.port}/healthz", timeout=5)


def test_a_client_that_does_not_trust_the_certificate_refuses_it(https_server: Server) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{https_server.port}/healthz", timeout=5)


def _serve(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AUIE, "serve", "--data-dir", str(data_dir), "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(lambda c: ["--tls-cert", str(c.cert)], id="cert only"),
        pytest.param(lambda c: ["--tls-key", str(c.key)], id="key only"),
        pytest.param(lambda c: ["--set", f"server.tls_cert={c.cert}"], id="setting cert only"),
    ],
)
def test_half_a_tls_configuration_is_refused(
    tmp_path: Path, certificate: Certificate, flags: object
) -> None:
    data_dir = tmp_path / "data"
    result = _serve(data_dir, *flags(certificate))  # type: ignore[operator]
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "--tls-cert and --tls-key go together" in output, output
    assert "Traceback" not in output
    # Refused before anything was created: no credentials were made or printed.
    assert not (data_dir / "bootstrap.json").exists()
    assert "client secret" not in output


def test_a_key_that_does_not_match_the_certificate_is_refused(
    tmp_path: Path, certificate: Certificate
) -> None:
    other = make_certificate(tmp_path / "other", "other")
    for cert, key in ((certificate.cert, other.key), (tmp_path / "missing.crt", other.key)):
        result = _serve(tmp_path / "data", "--tls-cert", str(cert), "--tls-key", str(key))
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "cannot load the TLS certificate" in output, output
        assert "Traceback" not in output

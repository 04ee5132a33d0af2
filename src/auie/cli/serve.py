"""``auie serve``: the whole engine in one process on the embedded defaults."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
from pathlib import Path

import click
import uvicorn
from rich.panel import Panel

from auie import gcpolicy
from auie.api.app import create_app
from auie.cli.common import configure_logging, console, settings_options
from auie.config import ServerConfig, Settings
from auie.process.supervisor import ProcessorSupervisor
from auie.runtime import Bootstrap, Runtime
from auie.transform.schedule import TransformScheduler


def _not_a_forced_exit(record: logging.LogRecord) -> bool:
    """A second Ctrl+C makes uvicorn exit without waiting for the application's shutdown,
    which is then cancelled (AUIE's own shutdown runs all the same, in its ``finally``);
    Starlette reports the cancellation as a traceback on ``uvicorn.error``. Not an error."""
    text = record.getMessage()
    return not (
        text.startswith("Traceback") and text.rstrip().endswith("asyncio.exceptions.CancelledError")
    )


def _show_bootstrap(boot: Bootstrap, data_dir: Path) -> None:
    console.print(
        Panel.fit(
            "\n".join(
                [
                    f"workspace      {boot.workspace}",
                    f"source         {boot.source}",
                    f"write key      {boot.write_key}",
                    f"client id      {boot.client_id}",
                    f"client secret  {boot.client_secret}",
                    "",
                    f"Saved once to {data_dir / 'bootstrap.json'} (mode 0600).",
                    "This is the only time the secrets are printed.",
                ]
            ),
            title="AUIE first start: credentials",
        )
    )


def _check_tls(server: ServerConfig) -> None:
    """HTTPS needs both the certificate and its key, readable and matching."""
    cert, key = server.tls_cert, server.tls_key
    if (cert is None) != (key is None):
        raise click.UsageError(
            "--tls-cert and --tls-key go together (settings server.tls_cert and "
            "server.tls_key): give both to serve HTTPS, or neither to serve HTTP"
        )
    if cert is None or key is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise click.UsageError(
            f"cannot load the TLS certificate {cert} with the key {key}: {exc}"
        ) from None


def _listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to ``host:port``, one per address the host resolves to (``localhost``:
    127.0.0.1 and ::1), that uvicorn listens on. A port that is taken, or a host with no
    address of this machine, is a usage error before the data directory is touched or the
    first start's credentials are printed. An address the machine cannot use (::1 with
    IPv6 off) is skipped when another one binds."""
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError, OverflowError) as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc}") from None
    sockets: list[socket.socket] = []
    unusable: list[OSError] = []
    for family, kind, proto, _, resolved in dict.fromkeys(found):
        address = resolved
        if sockets and port == 0:  # the port the system chose for the first address
            address = (resolved[0], sockets[0].getsockname()[1], *resolved[2:])
        listening = socket.socket(family, kind, proto)
        try:
            if family == socket.AF_INET6:  # :: is IPv6 only, as uvicorn's own bind made it
                listening.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind(address)
        except OSError as exc:
            listening.close()
            if exc.errno != errno.EADDRNOTAVAIL:
                for bound in sockets:
                    bound.close()
                raise click.UsageError(
                    f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                ) from None
            unusable.append(exc)
            continue
        sockets.append(listening)
    if not sockets:
        reason = unusable[0].strerror if unusable else "no address"
        raise click.UsageError(f"cannot listen on {host}:{port}: {reason}")
    return sockets


@click.command()
@click.option("--host", default=None, help="Address to listen on [default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default 8080].")
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM certificate: serve HTTPS.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM private key of --tls-cert.",
)
@settings_options(
    host="server.host", port="server.port", tls_cert="server.tls_cert", tls_key="server.tls_key"
)
def serve(settings: Settings) -> None:
    """Run the API, the collector and every background job."""
    configure_logging(settings.log_level)
    logging.getLogger("uvicorn.error").addFilter(_not_a_forced_exit)
    server = settings.server
    _check_tls(server)  # before anything is created or printed
    listening = _listen(server.host, server.port)  # and the address: a taken port ends here
    runtime = Runtime(settings)
    boot = runtime.bootstrap() if settings.server.bootstrap else None
    if boot is not None:
        _show_bootstrap(boot, settings.data_dir)
    app = create_app(runtime)
    config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        # AUIE reads X-Forwarded-For itself, only from server.trusted_proxies; uvicorn's
        # own handling would believe any local peer.
        proxy_headers=False,
        log_config=None,
        lifespan="on",
        ssl_certfile=str(server.tls_cert) if server.tls_cert else None,
        ssl_keyfile=str(server.tls_key) if server.tls_key else None,
        timeout_graceful_shutdown=10,
    )
    supervisor = ProcessorSupervisor(settings) if settings.process.enabled else None
    app.state.processor = supervisor  # its state in /readyz and /metrics
    transforms = TransformScheduler(settings)  # analytics.transform_interval_minutes; 0: off
    scheme = "https" if server.tls_cert else "http"
    port = listening[0].getsockname()[1]  # the one the system chose for --port 0
    console.print(f"AUIE listening on {scheme}://{server.host}:{port}  data: {settings.data_dir}")
    try:
        if supervisor is not None:
            supervisor.start()
        transforms.start()
        runtime.privacy.worker.ensure_started()  # resumes requests a crash interrupted
        runtime.privacy.scheduler.start()  # privacy.retention_interval_minutes; 0: off
        # Everything loaded so far lives as long as the server: keep it out of the cyclic
        # collector's full passes, which otherwise stall requests for hundreds of ms.
        gcpolicy.settle()
        with contextlib.suppress(KeyboardInterrupt):
            # uvicorn shuts down on Ctrl+C, then raises it again: a clean stop, exit 0.
            uvicorn.Server(config).run(sockets=listening)
    finally:
        transforms.stop()
        if supervisor is not None:
            supervisor.stop()
        runtime.close()

"""Property-based API testing with schemathesis against a real ``auie serve``.

Schemathesis reads ``/openapi.json`` and sends every operation generated requests, valid
and invalid (its examples, coverage and fuzzing phases; stateful sequences are off), with
an admin token holding every scope, the bootstrap write key as Basic user on the collector
operations and the bootstrap client id and secret on ``POST /oauth/token``. Every reply
must:

* not be a 5xx (``not_a_server_error``);
* have a status code the document lists for the operation (``status_code_conformance``);
* have the content type the document lists for that status (``content_type_conformance``);
* match the documented schema of that status (``response_schema_conformance``).

Generated requests that are not valid HTTP (a header byte RFC 9110 forbids) are refused by
uvicorn's parser with a plain-text ``400 Invalid HTTP request received.`` before any route
sees them; those are counted and printed, not held against the API document.

No operation is excluded. ``DELETE /v1/admin/keys/{key_id}`` and
``DELETE /v1/admin/clients/{client_id}`` are fuzzed like the rest, with one exception:
schemathesis reuses ids it read in earlier replies, and revoking the run's own write key
would leave the collector operations nothing but 401s for the rest of the run (revoking
its client would do the same to ``/oauth/token``). A ``before_call`` hook swaps those two
ids, and only those, for ids that do not exist; every other key and client, including
those the run creates, can be revoked.

The run is bounded: ``MAX_EXAMPLES`` generated cases per operation and phase, and
``TIME_BUDGET_SECONDS`` overall; every operation must have been tried when it ends. The
seed is fixed (``AUIE_SCHEMATHESIS_SEED`` picks another one, to explore further).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import schemathesis
from schemathesis.engine import StopReason, events
from schemathesis.engine import from_schema as engine_for
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from helpers import Server, bearer, get_token, start_server

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25
TIME_BUDGET_SECONDS = 150
SEED = int(os.environ.get("AUIE_SCHEMATHESIS_SEED", "20261126"))
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


def _config(server: Server, token: str) -> schemathesis.Config:
    credentials = server.credentials
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "max-time": TIME_BUDGET_SECONDS,
            "workers": 1,
            "cache": {"enabled": False},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "request-timeout": 30,
            "auth": {
                "openapi": {
                    "HTTPBearer": {"bearer": token},
                    "writeKey": {"username": credentials["writeKey"], "password": ""},
                    "clientBasic": {
                        "username": credentials["clientId"],
                        "password": credentials["clientSecret"],
                    },
                }
            },
        }
    )


def _protect(key_id: str, client_id: str) -> Callable[..., None]:
    """A ``before_call`` hook that never revokes the run's own write key or client."""
    protected = {
        ("DELETE", "/v1/admin/keys/{key_id}", "key_id"): key_id,
        ("DELETE", "/v1/admin/clients/{client_id}", "client_id"): client_id,
    }

    def before_call(context: object, case: schemathesis.Case, **kwargs: object) -> None:
        operation = case.operation
        for (method, path, name), value in protected.items():
            own = operation.method.upper() == method and operation.path == path
            if own and case.path_parameters.get(name) == value:
                case.path_parameters[name] = f"{value}-spared"

    return before_call


def _describe(recorder: object, case_id: str) -> str:
    interaction = recorder.interactions.get(case_id)  # type: ignore[attr-defined]
    if interaction is None:
        return ""
    request, response = interaction.request, interaction.response
    body = (request.body or b"")[:300]
    sent = f"{request.method} {request.uri} {body!r}"
    if response is None:
        return f"\n      request: {sent}"
    return (
        f"\n      request: {sent}\n      reply: {response.status_code} {response.content[:300]!r}"
    )


#: What uvicorn answers, as text/plain, to bytes that are not an HTTP request (a header
#: value with a byte RFC 9110 forbids, say): no route, and no OpenAPI document, sees them.
_NOT_HTTP = b"Invalid HTTP request received."


def _not_http(recorder: object, case_id: str) -> bool:
    interaction = recorder.interactions.get(case_id)  # type: ignore[attr-defined]
    response = interaction.response if interaction is not None else None
    return (
        response is not None
        and response.status_code == 400
        and response.content.strip() == _NOT_HTTP
    )


@dataclass
class Run:
    """What one schemathesis run found."""

    operations: set[str]
    failures: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    errors: list[str] = field(default_factory=list)
    cases: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    finished: events.EngineFinished | None = None
    #: Requests the server's HTTP parser refused before any route saw them (see _not_http).
    not_http: int = 0

    def record(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            self.cases[recorder.label] += len(recorder.cases)
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    self.statuses[recorder.label][interaction.response.status_code] += 1
            for case_id, checks in recorder.checks.items():
                if _not_http(recorder, case_id):
                    self.not_http += 1
                    continue
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        self.failures[recorder.label].add(
                            f"{check.name}: {failure.title}: {failure.message[:300]}"
                            + _describe(recorder, case_id)
                        )
        elif isinstance(event, events.NonFatalError):
            self.errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            self.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            self.finished = event


def run_schemathesis(server: Server) -> Run:
    credentials = server.credentials
    with httpx.Client(base_url=server.url) as client:
        token = get_token(client, credentials["clientId"], credentials["clientSecret"])
        [key] = client.get("/v1/admin/keys", headers=bearer(token)).json()
    schema = schemathesis.openapi.from_url(
        f"{server.url}/openapi.json", config=_config(server, token)
    )
    run = Run({result.ok().label for result in schema.get_all_operations()})
    hook = _protect(key["id"], credentials["clientId"])
    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(hook, "before_call")
    try:
        for event in engine_for(schema).execute():
            run.record(event)
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(hook)
    return run


def test_the_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        run = run_schemathesis(server)
    finally:
        server.stop()
    log = server.log_path.read_text()

    finished = run.finished
    assert finished is not None
    print(
        f"schemathesis {schemathesis.__version__}, seed {SEED}: {len(run.operations)} "
        f"operations, {sum(run.cases.values())} cases in {finished.running_time:.0f} s "
        f"({finished.stop_reason.value}); {run.not_http} refused by the HTTP parser"
    )
    assert not run.errors, "\n".join(run.errors)
    assert finished.stop_reason in {StopReason.COMPLETED, StopReason.MAX_TIME}
    untried = sorted(run.operations - set(run.cases))
    assert not untried, f"operations schemathesis never tried: {untried}"
    report = [
        f"{label}:\n    " + "\n    ".join(sorted(found)[:5])
        for label, found in sorted(run.failures.items())
    ]
    assert not run.failures, f"{len(report)} operation(s) failed:\n" + "\n".join(report)
    assert "Traceback" not in log, log[-5000:]
    # The credentials worked all along: the collector, the token endpoint and the bearer
    # token were each accepted at least once.
    accepted = {label for label, seen in run.statuses.items() if any(s < 300 for s in seen)}
    for label in ("POST /v1/track", "POST /v1/batch", "POST /oauth/token", "GET /v1/admin/keys"):
        assert label in accepted, f"{label} was never accepted: {dict(run.statuses[label])}"

"""``auie train``: fit candidate policies on a decision point's logged decisions and promote
the best only when off-policy evaluation says it beats the current one with confidence
(see docs/decide.md, "Offline training")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from auie.cli.common import (
    console,
    open_runtime,
    progress_bar,
    settings_options,
    workspace_id,
    workspace_option,
)
from auie.cli.decide import format_estimate, policy_chart
from auie.config import Settings
from auie.decide.evaluation import CURRENT, LOGGING, Candidate, parse_candidates
from auie.decide.ope import ESTIMATORS
from auie.decide.policies import policy_class
from auie.decide.training import DEFAULT_CANDIDATES, NEURAL, TrainOptions, train_decision_point
from auie.errors import InvalidRequest


def _json(value: str, option: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"{option} {value!r} is not JSON: {exc.msg}", code="invalid_candidate"
        ) from None


def _candidates(policies: tuple[str, ...], neural: bool) -> list[Candidate]:
    items = [_json(p, "--policy/--candidate") for p in policies]
    found = [c for c in parse_candidates(items) if c.name != CURRENT]
    if neural:
        policy_class("neural")  # without torch: the error names the extra to install
        if NEURAL.name in {c.name for c in found}:
            raise InvalidRequest("--neural and a candidate named neural", code="invalid_candidate")
        found.append(NEURAL)
    return found or list(DEFAULT_CANDIDATES)


@contextmanager
def _bar(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    progress = progress_bar(quiet)
    with progress:
        tasks: dict[str, Any] = {}

        def report(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(f"fit and judge {name}", total=total)
            progress.update(tasks[name], completed=done, total=total)

        yield report


@click.command()
@click.argument("decision_point")
@click.option(
    "--policy",
    "--candidate",
    "-c",
    "policies",
    multiple=True,
    metavar="JSON",
    help='A candidate policy, repeatable: \'{"type": "linucb", "alpha": 1}\' or '
    '\'{"name": "ts", "policy": {"type": "thompson"}}\' [default: linucb, thompson, '
    "squarecb, epsilon_greedy].",
)
@click.option(
    "--neural", is_flag=True, help="Add the neural reward model (extra: pip install 'auie[train]')."
)
@click.option(
    "--promote/--dry-run",
    default=True,
    show_default=True,
    help="Save the winner as the active version, or only report.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Confidence of 'beats the current policy' (shared by all candidates).",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.3,
    show_default=True,
    help="Share of the latest decisions kept to judge on.",
)
@click.option(
    "--bootstrap-rounds", type=click.IntRange(1, 100_000), default=1000, show_default=True
)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option(
    "--clip", type=click.FloatRange(0, min_open=True), default=None, help="Cap importance weights."
)
@click.option("--folds", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option(
    "--limit", type=click.IntRange(1), default=50_000, show_default=True, help="Latest decisions."
)
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@settings_options()
def train(
    decision_point: str,
    policies: tuple[str, ...],
    neural: bool,
    promote: bool,
    confidence: float,
    holdout: float,
    bootstrap_rounds: int,
    seed: int,
    clip: float | None,
    folds: int,
    limit: int,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Fit candidate policies on DECISION_POINT's logged decisions, judge them off-policy
    on the latest ones, and promote the best only if it beats the current policy with
    confidence (its DR lower bound above the current DR, and DR − current above 0)."""
    candidates = _candidates(policies, neural)
    options = TrainOptions(
        holdout=holdout,
        confidence=confidence,
        bootstrap_rounds=bootstrap_rounds,
        seed=seed,
        folds=folds,
        clip=clip,
        limit=limit,
        promote=promote,
    )
    runtime = open_runtime(settings)
    try:
        ws = workspace_id(runtime, workspace)
        with _bar(as_json) as report:
            result = train_decision_point(
                runtime.decision_store,
                runtime.eventlog,
                ws,
                decision_point,
                candidates,
                options=options,
                progress=report,
                lake=runtime.lake,
            )
        if result["promoted"]:
            runtime.audit.record(
                "decision_point.promoted",
                actor="cli",
                workspace=ws,
                target=decision_point,
                details={
                    "winner": result["winner"],
                    "version": result["version"],
                    "previous": result["previousVersion"],
                },
            )
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(result))
        return
    _print(result)


def _print(result: dict[str, Any]) -> None:
    level = 100 * result["confidence"]
    console.print(
        Text(
            f"{result['decisionPoint']}: {result['decisions']} logged decisions, "
            f"{result['notLearned']} not learned from, {result['skipped']} skipped, "
            f"{result['pending']} still in their reward wait; "
            f"trained on {result['trainDecisions']}, judged on the latest "
            f"{result['holdoutDecisions']} ({level:.4g}% intervals, "
            f"{result['bootstrapRounds']} resamples)"
        )
    )
    judged = {c["name"]: c for c in result["candidates"]}
    table = Table(title="Policy value on the holdout (DR is the judge)")
    table.add_column("policy", overflow="fold")
    for estimator in ("dr", *(e for e in ESTIMATORS if e != "dr")):
        table.add_column(estimator.upper(), justify="right")
    table.add_column("ESS", justify="right")
    table.add_column("DR − current", justify="right")
    table.add_column("beats current")
    for policy in result["policies"]:
        entry = judged.get(policy["name"])
        verdict, difference = "", ""
        if entry is not None:
            difference = format_estimate(entry["difference"])
            verdict = "yes" if entry["beatsCurrent"] else "no"
        elif policy["name"] in (CURRENT, LOGGING):
            verdict = policy["name"]
        estimates = policy["estimates"]
        table.add_row(
            Text(policy["name"] + (" ★" if policy["name"] == result["winner"] else "")),
            format_estimate(estimates["dr"]),
            *(format_estimate(estimates[e]) for e in ESTIMATORS if e != "dr"),
            "–" if policy["ess"] is None else f"{policy['ess']:.1f}",
            difference,
            Text(verdict, style={"yes": "green", "no": "red"}.get(verdict, "")),
        )
    console.print(table)
    console.print(policy_chart(result, "dr"))
    console.print(_verdict(result))


def _verdict(result: dict[str, Any]) -> Text:
    winner = result["winner"]
    if winner is None:
        return Text(
            "Not promoted: no candidate beats the current policy with confidence "
            f"(version {result['previousVersion'] or 'none'} stays active).",
            style="yellow",
        )
    if not result["promoted"]:
        return Text(f"Dry run: {winner} beats the current policy and would be promoted.")
    return Text(
        f"Promoted {winner}: version {result['version']} is active (was "
        f"{result['previousVersion'] or 'none'}); running servers load it within a second. "
        + (
            f"Undo with: auie decisions rollback {result['decisionPoint']} "
            f"{result['previousVersion']}"
            if result["previousVersion"]
            else ""
        ),
        style="green",
    )

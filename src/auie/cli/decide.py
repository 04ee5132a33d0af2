"""``auie decisions evaluate``: off-policy evaluation of candidate policies on the decision
log (see docs/decide.md, "Evaluation"); ``auie decisions versions`` and ``rollback``: the
model registry's policy versions."""

from __future__ import annotations

import json
import math
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from auie.cli.common import (
    console,
    json_option,
    open_runtime,
    safe_text,
    settings_options,
    step_bar,
    workspace_id,
    workspace_option,
)
from auie.config import Settings
from auie.decide.evaluation import EvaluationOptions, evaluate_decision_point, parse_candidates
from auie.decide.ope import ESTIMATORS
from auie.errors import InvalidRequest

_BAR_WIDTH = 40


@click.group()
def decisions() -> None:
    """The decision service's logged decisions."""


def _candidate(value: str) -> Any:
    if value == "current":
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"--candidate {value!r} is neither 'current' nor JSON: {exc.msg}",
            code="invalid_candidate",
        ) from None


@decisions.command("evaluate")
@click.argument("decision_point")
@click.option(
    "--candidate",
    "-c",
    "candidates",
    multiple=True,
    metavar="JSON",
    help='A policy to evaluate: \'{"type": "linucb", "alpha": 1}\', '
    '\'{"name": "ts", "policy": {"type": "thompson"}}\' or current (always included).',
)
@click.option(
    "--bootstrap-rounds", type=click.IntRange(0, 100_000), default=1000, show_default=True
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option(
    "--clip", type=click.FloatRange(0, min_open=True), default=None, help="Cap importance weights."
)
@click.option(
    "--folds",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Cross-fitting folds of the reward model.",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=50_000,
    show_default=True,
    help="Latest decisions read.",
)
@click.option(
    "--frozen", is_flag=True, help="Do not learn along the log (default: progressive validation)."
)
@click.option(
    "--top",
    type=click.IntRange(0, 100),
    default=10,
    show_default=True,
    help="Features in the importance report.",
)
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@settings_options()
def evaluate(
    decision_point: str,
    candidates: tuple[str, ...],
    bootstrap_rounds: int,
    confidence: float,
    seed: int,
    clip: float | None,
    folds: int,
    limit: int,
    frozen: bool,
    top: int,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Estimate what candidate policies would have earned on DECISION_POINT's logged
    decisions (IPS, SNIPS, DM, DR with bootstrap intervals), compared with the current one."""
    runtime = open_runtime(settings)
    try:
        ws = workspace_id(runtime, workspace)
        options = EvaluationOptions(
            bootstrap_rounds=bootstrap_rounds,
            confidence=confidence,
            seed=seed,
            clip=clip,
            folds=folds,
            limit=limit,
            learn=not frozen,
            importance_top=top,
        )
        with step_bar(as_json) as report:
            result = evaluate_decision_point(
                runtime.decision_store,
                runtime.eventlog,
                ws,
                decision_point,
                parse_candidates([_candidate(c) for c in candidates]),
                options=options,
                lake=runtime.lake,
                progress=report,
            )
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(result))
        return
    _print(result)


def format_number(value: float | None, digits: int = 4) -> str:
    """A figure of an evaluation table (``–`` when undefined)."""
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_estimate(entry: dict[str, Any]) -> str:
    """An estimate and, on a second line, its interval."""
    text = format_number(entry["value"])
    if entry.get("lower") is not None:
        text += f"\n[{format_number(entry['lower'])}, {format_number(entry['upper'])}]"
    return text


def _print(result: dict[str, Any]) -> None:
    level = round(100 * result["confidence"])
    console.print(
        Text(
            f"{result['decisionPoint']}: {result['rounds']} logged decisions evaluated "
            f"({result['skipped']} skipped, {result['pending']} still in their reward wait), "
            f"mean reward {format_number(result['meanReward'])}; "
            f"{'progressive validation' if result['learn'] else 'frozen policies'}, "
            f"{level}% bootstrap intervals ({result['bootstrapRounds']} resamples)"
        )
    )
    comparisons = {c["name"]: c for c in result["comparisons"]}
    table = Table(title=f"Estimated policy value ({level}% CI)")
    table.add_column("policy", overflow="fold")
    for estimator in ESTIMATORS:
        table.add_column(estimator.upper(), justify="right")
    table.add_column("ESS", justify="right")
    table.add_column("DR − current", justify="right")
    table.add_column("verdict")
    for policy in result["policies"]:
        compared = comparisons.get(policy["name"])
        difference = verdict = ""
        if compared is not None:
            difference = format_estimate(compared["differences"][compared["estimator"]])
            verdict = compared["verdict"]
        elif policy["name"] == result["baseline"]:
            verdict = "baseline"
        table.add_row(
            Text(policy["name"]),
            *(format_estimate(policy["estimates"][e]) for e in ESTIMATORS),
            format_number(policy["ess"], 1),
            difference,
            Text(verdict, style={"better": "green", "worse": "red"}.get(verdict, "")),
        )
    console.print(table)
    console.print(policy_chart(result, "dr"))
    if result.get("featureImportance"):
        features = Table(title="Context features the current policy's model relies on")
        features.add_column("feature", overflow="fold")
        features.add_column("score", justify="right")
        features.add_column("MSE increase", justify="right")
        for row in result["featureImportance"]:
            features.add_row(
                Text(safe_text(row["feature"])),
                format_number(row["score"], 5),
                format_number(row["mseIncrease"], 5),
            )
        console.print(features)


def policy_chart(result: dict[str, Any], estimator: str) -> Table:
    """Horizontal bars of one estimator with its interval as error bars (├──┤), a policy
    per row (``auie evaluate``, ``auie train``)."""
    rows = [(p["name"], p["estimates"][estimator]) for p in result["policies"]]
    points: list[float] = [
        float(v)
        for _, e in rows
        for v in (e["value"], e["lower"], e["upper"])
        if v is not None and math.isfinite(v)
    ]
    low, high = min([0.0, *points]), max([0.0, *points])
    span = (high - low) or 1.0

    def position(value: float) -> int:
        return min(_BAR_WIDTH - 1, max(0, round((value - low) / span * (_BAR_WIDTH - 1))))

    chart = Table(
        title=f"{estimator.upper()} with {round(100 * result['confidence'])}% interval",
        show_header=False,
        box=None,
    )
    chart.add_column("policy", overflow="fold")
    chart.add_column("bar", no_wrap=True)
    chart.add_column("value", justify="right")
    zero = position(0.0)
    for name, entry in rows:
        value = entry["value"]
        line = Text()
        if value is None:
            chart.add_row(Text(safe_text(name)), line, "–")
            continue
        at = position(value)
        left_bar, right_bar = min(zero, at), max(zero, at)
        lower = position(entry["lower"]) if entry["lower"] is not None else None
        upper = position(entry["upper"]) if entry["upper"] is not None else None
        for i in range(_BAR_WIDTH):
            if lower is not None and upper is not None and i in (lower, upper):
                line.append("┼" if lower == upper else ("├" if i == lower else "┤"), "bold")
            elif left_bar <= i < right_bar or (i == at and at != zero):
                line.append("█", "cyan")
            elif lower is not None and upper is not None and lower < i < upper:
                line.append("─", "bold")
            else:
                line.append(" ")
        chart.add_row(Text(safe_text(name)), line, format_number(value))
    scale = f"{low:.4g}".ljust(_BAR_WIDTH // 2) + f"{high:.4g}".rjust(_BAR_WIDTH - _BAR_WIDTH // 2)
    chart.add_row("", Text(scale, style="dim"), "")
    return chart


# -- policy versions --------------------------------------------------------------------------


@decisions.command("versions")
@click.argument("decision_point")
@workspace_option
@json_option
@settings_options()
def versions_command(
    decision_point: str, workspace: str | None, as_json: bool, settings: Settings
) -> None:
    """The policy versions of DECISION_POINT in the model registry (* = served)."""
    runtime = open_runtime(settings)
    try:
        ws = workspace_id(runtime, workspace)
        point = runtime.decision_store.require(ws, decision_point)
        rows: list[dict[str, Any]] = [
            {
                "version": v.version,
                "active": v.version == point.active_version,
                "arm": v.arm or "main",
                "kind": v.kind,
                "updates": v.updates,
                "source": v.source,
                "note": v.note,
                "createdAt": v.created_at.isoformat(),
            }
            for v in runtime.decision_store.versions(ws, decision_point)
        ]
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table(title=f"Policy versions of {decision_point}")
    for column in ("", "version", "arm", "kind", "updates", "source", "created", "note"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            "*" if row["active"] else "",
            str(row["version"]),
            row["arm"],
            row["kind"],
            str(row["updates"]),
            row["source"],
            row["createdAt"][:19],
            row["note"] or "",
        )
    console.print(table)


@decisions.command("rollback")
@click.argument("decision_point")
@click.argument("version", type=click.IntRange(1))
@workspace_option
@settings_options()
def rollback_command(
    decision_point: str, version: int, workspace: str | None, settings: Settings
) -> None:
    """Serve VERSION of DECISION_POINT again (running servers switch within seconds).

    The same as POST /v1/decision-points/{name}/rollback; recorded in the audit log."""
    runtime = open_runtime(settings)
    try:
        ws = workspace_id(runtime, workspace)
        before = runtime.decision_store.require(ws, decision_point).active_version
        runtime.decision_store.activate(ws, decision_point, version)
        runtime.audit.record(
            "decision_point.rolled_back",
            actor="cli",
            workspace=ws,
            target=decision_point,
            details={"from": before, "to": version},
        )
    finally:
        runtime.close()
    click.echo(f"{decision_point}: version {version} is served (was {before})")

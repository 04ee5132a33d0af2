"""``auie analytics ...``: trends, funnels, retention, segments and SQL in the terminal.

Every command prints JSON with ``--json`` (the API's reply, byte for byte the same shape)
and a chart otherwise: trends as bar charts over time, funnels as horizontal bars,
retention as a heat-map table. Requests can be given as flags or, whole, as the API's JSON
body with ``--request FILE`` (``-`` for stdin).

Filters on the command line: ``KIND:NAME:OP[:VALUE]`` with KIND one of ``property``,
``trait``, ``computedTrait``, ``field``; VALUE is read as JSON when it is JSON (``19``,
``true``, ``["a","b"]``, ``"19"``) and as a string otherwise. A filter can also be a JSON
object. Breakdowns: ``KIND:NAME``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import click
from pydantic import BaseModel, ValidationError
from rich.color import Color
from rich.style import Style
from rich.table import Table
from rich.text import Text

from auie.analytics.funnels import funnels
from auie.analytics.models import (
    _MAX_DAYS_RANGE,
    FunnelsIn,
    FunnelsOut,
    FunnelStepOut,
    RetentionIn,
    RetentionOut,
    SegmentIn,
    SegmentMembersOut,
    SegmentOut,
    TrendsIn,
    TrendsOut,
)
from auie.analytics.persons import Scope
from auie.analytics.retention import retention
from auie.analytics.segments import MAX_PAGE, SegmentStore, members
from auie.analytics.sql import run_sql
from auie.analytics.trends import trends
from auie.cli.common import (
    console,
    emit,
    json_option,
    open_runtime,
    parse_json,
    read_json_file,
    safe_text,
    settings_options,
    workspace_id,
    workspace_option,
)
from auie.config import Settings
from auie.errors import InvalidRequest, describe_problems
from auie.runtime import Runtime

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
_KINDS = {"property": "property", "trait": "trait", "computedTrait": "computedTrait"}
_KINDS |= {"computed_trait": "computedTrait", "field": "field"}
_PALETTE = ["cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta"]
_BLOCKS = " ▁▂▃▄▅▆▇█"


# -- parsing --------------------------------------------------------------------------------------


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_filter(spec: str, param_hint: str = "--filter") -> dict[str, Any]:
    """``KIND:NAME:OP[:VALUE]`` or a JSON object, as the API's filter object; a problem is
    reported under ``param_hint``, the option it came from."""
    if spec.lstrip().startswith("{"):
        found = _value(spec)
        if not isinstance(found, dict):
            raise click.BadParameter(f"{spec!r} is not a JSON object", param_hint=param_hint)
        return found
    parts = spec.split(":", 3)
    if len(parts) < 3 or parts[0] not in _KINDS:
        raise click.BadParameter(
            f"{spec!r} is not KIND:NAME:OP[:VALUE] (KIND: property, trait, computedTrait, field)",
            param_hint=param_hint,
        )
    kind, name, op = parts[:3]
    found = {_KINDS[kind]: name, "op": op}
    if len(parts) == 4:
        found["value"] = _value(parts[3])
    return found


def parse_breakdown(spec: str | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    kind, sep, name = spec.partition(":")
    if not sep or kind not in _KINDS or not name:
        raise click.BadParameter(f"{spec!r} is not KIND:NAME", param_hint="--breakdown")
    return {_KINDS[kind]: name}


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 time", param_hint=name) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _range(start: str | None, end: str | None, last: float) -> dict[str, str]:
    stop = _time(end, "--to") or datetime.now(UTC)
    begin = _time(start, "--from") or stop - timedelta(days=last)
    return {"from": begin.isoformat(), "to": stop.isoformat()}


def _validate(model: type[M], body: dict[str, Any], flags: Mapping[str, str] | None = None) -> M:
    """``body`` as ``model``, or :class:`InvalidRequest` saying what is wrong where. A body
    built from flags (``flags``: the request's field → the option that sets it) names the
    option with the field, ``--step (steps.0.event): ...``."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        if flags is None:
            raise InvalidRequest(describe_problems(errors)) from None
        named = []
        for error in errors:
            where = ".".join(str(part) for part in error.get("loc", ()))
            flag = _flag_of(error.get("loc", ()), flags)
            named.append({**error, "loc": (f"{flag} ({where})" if flag else where,)})
        whole = "the range (--from, --to, --last)"
        raise InvalidRequest(describe_problems(named, whole=whole)) from None


def _flag_of(loc: Sequence[Any], flags: Mapping[str, str]) -> str | None:
    """The option for an error at ``loc``: the longest prefix of it ``flags`` knows
    (``steps.filters`` for ``steps.0.filters.1.op``; indexes left out)."""
    path = [str(part) for part in loc if not isinstance(part, int)]
    for end in range(len(path), 0, -1):
        flag = flags.get(".".join(path[:end]))
        if flag is not None:
            return flag
    return None


def _missing(name: str, message: str) -> NoReturn:
    """A usage error for the current command's required option ``name`` (the parameter's
    name): "Missing option '-e' / '--event'. ``message``"."""
    ctx = click.get_current_context()
    param = next(p for p in ctx.command.params if p.name == name)
    raise click.MissingParameter(message, ctx=ctx, param=param)


def _request_file(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    body = read_json_file(path, "--request")
    if not isinstance(body, dict):
        raise click.BadParameter(
            f"{'stdin' if path == '-' else path}: the request must be a JSON object",
            param_hint="--request",
        )
    return body


def _print_json(model: BaseModel | list[Any]) -> None:
    if isinstance(model, list):
        click.echo(json.dumps([m.model_dump(mode="json", by_alias=True) for m in model]))
    else:
        click.echo(json.dumps(model.model_dump(mode="json", by_alias=True)))


class _Days(click.FloatRange):
    """Days: a finite number, more than 0 and at most the longest range an analysis
    covers (:class:`click.FloatRange` alone lets ``nan`` through)."""

    name = "days"

    def __init__(self) -> None:
        super().__init__(min=0, max=_MAX_DAYS_RANGE, min_open=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        days = super().convert(value, param, ctx)
        if math.isnan(days):
            self.fail(f"{value!r} is not a number of days", param, ctx)
        return days


def range_options(func: F) -> F:
    func = click.option("--from", "start", default=None, help="ISO-8601 start (UTC if naive).")(
        func
    )
    func = click.option("--to", "end", default=None, help="ISO-8601 end, exclusive [now].")(func)
    func = click.option(
        "--last",
        type=_Days(),
        default=30.0,
        show_default=True,
        help="Days before --to (when --from is not given).",
    )(func)
    return click.option(
        "--request",
        "request_file",
        default=None,
        metavar="FILE",
        help="The whole request as the API's JSON body (- for stdin); flags are ignored.",
    )(func)


def _scope(settings: Settings, workspace: str | None) -> tuple[Runtime, Scope]:
    runtime = open_runtime(settings)
    return runtime, Scope.of(runtime, workspace_id(runtime, workspace))


def _analyse(
    settings: Settings,
    workspace: str | None,
    analysis: Callable[[Scope, In], Out],
    request: In,
    show: Callable[[Out], None],
    as_json: bool,
) -> None:
    """Run one analysis on the workspace's lake and print it: JSON, or ``show``'s chart."""
    runtime, scope = _scope(settings, workspace)
    try:
        out = analysis(scope, request)
    finally:
        runtime.close()
    if as_json:
        _print_json(out)
    else:
        show(out)


@click.group()
def analytics() -> None:
    """Trends, funnels, retention, segments and SQL over the lake."""


# -- trends ---------------------------------------------------------------------------------------

#: The request's fields (paths, indexes left out) → the options that set them.
_RANGE_FLAGS = {"from": "--from", "to": "--to"}
_TRENDS_FLAGS = {
    "events": "--event",
    "measure": "--measure",
    "interval": "--interval",
    "filters": "--filter",
    "breakdown": "--breakdown",
    "breakdownLimit": "--breakdown-limit",
    **_RANGE_FLAGS,
}
_FUNNEL_FLAGS = {
    "steps": "--step",
    "steps.filters": "--step-filter",
    "conversionWindow": "--window",
    "breakdown": "--breakdown",
    "breakdownLimit": "--breakdown-limit",
    **_RANGE_FLAGS,
}
_RETENTION_FLAGS = {
    "startEvent": "--start-event",
    "returnEvent": "--return-event",
    "period": "--period",
    "periods": "--periods",
    **_RANGE_FLAGS,
}


@analytics.command("trends")
@click.option("--event", "-e", "events", multiple=True, help="Event name (repeat).")
@click.option("--measure", type=click.Choice(["events", "people"]), default="events")
@click.option("--interval", type=click.Choice(["hour", "day", "week"]), default="day")
@click.option("--filter", "-f", "filters", multiple=True, metavar="KIND:NAME:OP[:VALUE]")
@click.option("--breakdown", "-b", default=None, metavar="KIND:NAME")
@click.option("--breakdown-limit", type=click.IntRange(1, 100), default=10, show_default=True)
@range_options
@workspace_option
@json_option
@settings_options()
def trends_command(
    events: Sequence[str],
    measure: str,
    interval: str,
    filters: Sequence[str],
    breakdown: str | None,
    breakdown_limit: int,
    start: str | None,
    end: str | None,
    last: float,
    request_file: str | None,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Events or people per hour, day or week, e.g. `auie analytics trends -e "Signed Up"`."""
    body = _request_file(request_file)
    flags = None
    if body is None:
        if not events:
            _missing("events", 'Name at least one event (the request\'s "events").')
        body = {
            "events": list(events),
            "measure": measure,
            "interval": interval,
            "filters": [parse_filter(f) for f in filters],
            "breakdown": parse_breakdown(breakdown),
            "breakdownLimit": breakdown_limit,
            **_range(start, end, last),
        }
        flags = _TRENDS_FLAGS
    request = _validate(TrendsIn, body, flags)
    _analyse(settings, workspace, trends, request, print_trends, as_json)


def print_trends(out: TrendsOut, height: int = 8) -> None:
    width = max(10, console.width - 12)
    shown = out.buckets[-width:]
    console.print(
        Text(
            f"{out.measure} per {out.interval}, {_when(out.from_)} to {_when(out.to)} (UTC)",
            style="bold",
        )
    )
    if len(shown) < len(out.buckets):
        console.print(Text(f"(the last {len(shown)} of {len(out.buckets)} buckets)", "dim"))
    if not out.series:
        console.print(Text("no data", style="dim"))
    for index, series in enumerate(out.series[:12]):
        color = _PALETTE[index % len(_PALETTE)]
        values = series.values[-len(shown) :] if shown else []
        name = series.event
        if series.other:
            name += " · (other)"
        elif series.breakdown is not None or any(s.breakdown for s in out.series):
            name += f" · {series.breakdown}"
        console.print(
            Text.assemble((safe_text(name), f"bold {color}"), f"  total {series.total:,}")
        )
        top = max(values, default=0)
        step = max(1, min(8, width // max(1, len(values))))
        bar = step - 1 if step > 2 else step
        for row in range(height, 0, -1):
            line = Text(f"{top if row == height else '':>9} │", style="dim")
            for value in values:
                eighths = 0 if top == 0 else round(value / top * height * 8)
                cell = max(0, min(8, eighths - (row - 1) * 8))
                line.append(_BLOCKS[cell] * bar + " " * (step - bar), style=color)
            console.print(line)
        console.print(Text(f"{0:>9} └" + "─" * (len(values) * step), style="dim"))
        if shown:
            first, final = _when(shown[0]), _when(shown[-1])
            gap = len(values) * step - len(first) - len(final)
            labels = first + " " * gap + final if gap >= 1 else first
            console.print(Text(" " * 11 + labels, style="dim"))
    if len(out.series) > 12:
        console.print(Text(f"... {len(out.series) - 12} more series (use --json)", "dim"))


def _when(moment: datetime) -> str:
    if moment.hour or moment.minute:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


# -- funnels --------------------------------------------------------------------------------------


@analytics.command("funnel")
@click.option("--step", "-s", "steps", multiple=True, help="Event name of a step (in order).")
@click.option(
    "--step-filter",
    "step_filters",
    multiple=True,
    metavar="STEP:KIND:NAME:OP[:VALUE]",
    help="A filter on one step (1-based), e.g. 1:property:category:eq:shoes.",
)
@click.option(
    "--window",
    type=click.IntRange(1, 366 * 86_400),
    default=86_400,
    show_default=True,
    help="Conversion window, seconds.",
)
@click.option("--breakdown", "-b", default=None, metavar="KIND:NAME")
@click.option("--breakdown-limit", type=click.IntRange(1, 100), default=10, show_default=True)
@range_options
@workspace_option
@json_option
@settings_options()
def funnel_command(
    steps: Sequence[str],
    step_filters: Sequence[str],
    window: int,
    breakdown: str | None,
    breakdown_limit: int,
    start: str | None,
    end: str | None,
    last: float,
    request_file: str | None,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Conversion through ordered steps, e.g. `auie analytics funnel -s A -s B -s C`."""
    body = _request_file(request_file)
    flags = None
    if body is None:
        if not steps:
            _missing("steps", 'Name at least 2 steps, in order (the request\'s "steps").')
        step_list: list[dict[str, Any]] = [{"event": s, "filters": []} for s in steps]
        for spec in step_filters:
            index, sep, rest = spec.partition(":")
            if not sep or not index.isdigit() or not 1 <= int(index) <= len(step_list):
                raise click.BadParameter(
                    f"{spec!r}: no step {index} (STEP is 1 to {len(step_list)})",
                    param_hint="--step-filter",
                )
            step_list[int(index) - 1]["filters"].append(parse_filter(rest, "--step-filter"))
        body = {
            "steps": step_list,
            "conversionWindow": window,
            "breakdown": parse_breakdown(breakdown),
            "breakdownLimit": breakdown_limit,
            **_range(start, end, last),
        }
        flags = _FUNNEL_FLAGS
    request = _validate(FunnelsIn, body, flags)
    _analyse(settings, workspace, funnels, request, print_funnel, as_json)


def print_funnel(out: FunnelsOut) -> None:
    console.print(
        Text(
            f"funnel, {_when(out.from_)} to {_when(out.to)} (UTC),"
            f" window {_duration(out.conversion_window)}",
            style="bold",
        )
    )
    _funnel_bars(out.steps)
    if out.breakdowns:
        table = Table(title="by breakdown (people per step)")
        table.add_column("value", overflow="fold")
        for step in out.steps:
            heading = safe_text(f"{step.step}. {step.event}")
            table.add_column(heading, justify="right", overflow="fold")
        table.add_column("conversion", justify="right")
        for group in out.breakdowns:
            label = "(other)" if group.other else str(group.breakdown)
            rate = group.steps[-1].conversion_rate
            table.add_row(
                Text(safe_text(label)),
                *(f"{s.count:,}" for s in group.steps),
                "—" if rate is None else f"{rate:.1%}",
            )
        console.print(table)


def _funnel_bars(steps: list[FunnelStepOut]) -> None:
    first = max(steps[0].count, 1)
    name_width = min(28, max(len(f"{s.step}. {s.event}") for s in steps))
    width = max(10, console.width - name_width - 22)
    for step in steps:
        filled = round(step.count / first * width)
        rate = step.conversion_rate
        line = Text(safe_text(f"{step.step}. {step.event}")[:name_width].ljust(name_width) + " ")
        line.append("█" * filled, style="cyan")
        line.append("░" * (width - filled), style="dim")
        line.append(f" {step.count:>7,} {'—' if rate is None else f'{rate:6.1%}'}")
        console.print(line)
        if step.step > 1:
            previous = step.conversion_from_previous
            median = step.median_seconds_to_convert
            note = f"{' ' * name_width}   ↳ {'—' if previous is None else f'{previous:.1%}'}"
            note += " of the previous step"
            if median is not None:
                note += f", median {_duration(median)}"
            console.print(Text(note, style="dim"))


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


# -- retention ------------------------------------------------------------------------------------


@analytics.command("retention")
@click.option("--start-event", default=None, help="The event that puts people in a cohort.")
@click.option("--return-event", default=None, help="The event that counts as coming back.")
@click.option("--period", type=click.Choice(["day", "week"]), default="day")
@click.option(
    "--periods",
    type=click.IntRange(1, 100),
    default=8,
    show_default=True,
    help="Columns, 0 included.",
)
@range_options
@workspace_option
@json_option
@settings_options()
def retention_command(
    start_event: str | None,
    return_event: str | None,
    period: str,
    periods: int,
    start: str | None,
    end: str | None,
    last: float,
    request_file: str | None,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Cohorts by first start event and their return, e.g. `--start-event "Signed Up"`."""
    body = _request_file(request_file)
    flags = None
    if body is None:
        if start_event is None:
            _missing(
                "start_event",
                'Name the event that puts people in a cohort (the request\'s "startEvent").',
            )
        body = {
            "startEvent": start_event,
            "returnEvent": start_event if return_event is None else return_event,
            "period": period,
            "periods": periods,
            **_range(start, end, last),
        }
        flags = _RETENTION_FLAGS
    request = _validate(RetentionIn, body, flags)
    _analyse(settings, workspace, retention, request, print_retention, as_json)


def heat(rate: float) -> Style:
    """Dark blue for 0 through teal to bright green for 1."""
    rate = max(0.0, min(1.0, rate))
    low, high = (22, 32, 72), (46, 204, 113)
    rgb = [round(a + (b - a) * rate) for a, b in zip(low, high, strict=True)]
    return Style(color="white" if rate < 0.6 else "black", bgcolor=Color.from_rgb(*rgb))


def print_retention(out: RetentionOut) -> None:
    table = Table(
        title=f"retention by {out.period}, {_when(out.from_)} to {_when(out.to)} (UTC)",
        caption="% of the cohort coming back in period k; blank: not observable yet",
    )
    table.add_column("cohort")
    table.add_column("people", justify="right")
    for k in range(out.periods):
        table.add_column(f"{out.period[0]}{k}", justify="right")
    for cohort in out.cohorts:
        cells: list[Text] = []
        for count, rate in zip(cohort.counts, cohort.rates, strict=True):
            if count is None:
                cells.append(Text(""))
            elif rate is None:
                cells.append(Text("—", style="dim"))
            else:
                cells.append(Text(f"{rate:.0%}", style=heat(rate)))
        table.add_row(_when(cohort.cohort), f"{cohort.size:,}", *cells)
    console.print(table)


# -- segments -------------------------------------------------------------------------------------


@analytics.group("segments")
def segments_group() -> None:
    """Saved segments: people by traits, computed traits and behaviour."""


def _definition(text: str) -> Any:
    """``--definition``: JSON, or ``@FILE`` holding it."""
    if text.startswith("@"):
        return read_json_file(text[1:], "--definition", dash_is_stdin=False)
    return parse_json(text, "the definition", "--definition")


def _store(settings: Settings, workspace: str | None) -> tuple[Runtime, SegmentStore, str]:
    runtime = open_runtime(settings)
    return runtime, SegmentStore(runtime.engine), workspace_id(runtime, workspace)


def _show_segments(found: list[SegmentOut], as_json: bool, *, one: bool = False) -> None:
    """Segments as a table, or as JSON: a list, or with ``one`` the segment's object."""
    if as_json:
        _print_json(found[0] if one else found)
        return
    rows = [
        {
            "id": s.id,
            "name": s.name,
            "definition": json.dumps(s.definition),
            "updated": s.updated_at.strftime("%Y-%m-%d %H:%M"),
        }
        for s in found
    ]
    emit(rows, False, ("id", "name", "definition", "updated"))


@segments_group.command("list")
@workspace_option
@json_option
@settings_options()
def segments_list(workspace: str | None, as_json: bool, settings: Settings) -> None:
    """Every saved segment, by name."""
    runtime, store, ws = _store(settings, workspace)
    try:
        _show_segments([s.to_out() for s in store.list(ws)], as_json)
    finally:
        runtime.close()


@segments_group.command("create")
@click.argument("name")
@click.option("--definition", "-d", required=True, help="JSON, or @FILE.")
@click.option("--description", default="")
@workspace_option
@json_option
@settings_options()
def segments_create(
    name: str,
    definition: str,
    description: str,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Save a segment: `create buyers -d '{"event": "Order Completed", "inLastDays": 30}'`."""
    spec = _validate(
        SegmentIn,
        {"name": name, "description": description, "definition": _definition(definition)},
    )
    runtime, store, ws = _store(settings, workspace)
    try:
        _show_segments([store.create(ws, spec).to_out()], as_json, one=True)
    finally:
        runtime.close()


@segments_group.command("show")
@click.argument("segment_id")
@workspace_option
@json_option
@settings_options()
def segments_show(
    segment_id: str, workspace: str | None, as_json: bool, settings: Settings
) -> None:
    """One saved segment and its definition."""
    runtime, store, ws = _store(settings, workspace)
    try:
        _show_segments([store.get(ws, segment_id).to_out()], as_json, one=True)
    finally:
        runtime.close()


@segments_group.command("update")
@click.argument("segment_id")
@click.option("--name", default=None)
@click.option("--definition", "-d", default=None, help="JSON, or @FILE.")
@click.option("--description", default=None)
@workspace_option
@json_option
@settings_options()
def segments_update(
    segment_id: str,
    name: str | None,
    definition: str | None,
    description: str | None,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """Change a segment's name, description or definition."""
    runtime, store, ws = _store(settings, workspace)
    try:
        current = store.get(ws, segment_id)
        spec = _validate(
            SegmentIn,
            {
                "name": current.name if name is None else name,
                "description": current.description if description is None else description,
                "definition": (
                    current.definition if definition is None else _definition(definition)
                ),
            },
        )
        _show_segments([store.update(ws, segment_id, spec).to_out()], as_json, one=True)
    finally:
        runtime.close()


@segments_group.command("delete")
@click.argument("segment_id")
@workspace_option
@settings_options()
def segments_delete(segment_id: str, workspace: str | None, settings: Settings) -> None:
    """Delete a segment."""
    runtime, store, ws = _store(settings, workspace)
    try:
        store.delete(ws, segment_id)
    finally:
        runtime.close()
    click.echo(f"segment {segment_id} deleted")


@segments_group.command("members")
@click.argument("segment_id")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=100, show_default=True)
@click.option("--cursor", default=None, help="nextCursor of the previous page.")
@workspace_option
@json_option
@settings_options()
def segments_members(
    segment_id: str,
    limit: int,
    cursor: str | None,
    workspace: str | None,
    as_json: bool,
    settings: Settings,
) -> None:
    """The segment's members now (profile ids) and their count."""
    runtime, store, ws = _store(settings, workspace)
    try:
        out: SegmentMembersOut = members(
            Scope.of(runtime, ws), store.get(ws, segment_id), limit=limit, cursor=cursor
        )
    finally:
        runtime.close()
    if as_json:
        _print_json(out)
        return
    emit([{"profileId": m.profile_id} for m in out.members], False, ("profileId",))
    line = f"{out.count:,} members"
    if out.next_cursor:
        line += f"; next page: --cursor {out.next_cursor}"
    console.print(Text(line))


# -- SQL ------------------------------------------------------------------------------------------


@analytics.command("sql")
@click.argument("query")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Rows, at most analytics.sql_row_limit [analytics.sql_row_limit].",
)
@workspace_option
@json_option
@settings_options()
def sql_command(
    query: str, limit: int | None, workspace: str | None, as_json: bool, settings: Settings
) -> None:
    """One read-only SELECT over the lake tables and marts, as `POST /v1/sql` runs it."""
    most = settings.analytics.sql_row_limit  # what POST /v1/sql returns at most
    if limit is not None and limit > most:
        raise click.BadParameter(
            f"{limit} is more than analytics.sql_row_limit ({most}) rows;"
            f" raise that with --set analytics.sql_row_limit={limit}",
            param_hint="--limit",
        )
    runtime = open_runtime(settings)
    try:
        out = run_sql(runtime, workspace_id(runtime, workspace), query, limit)
    finally:
        runtime.close()
    rows = out.rows
    if as_json:
        click.echo(json.dumps({"columns": out.columns, "rows": rows, "truncated": out.truncated}))
        return
    table = Table()
    for column in out.columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(_cell(v)) for v in row))
    console.print(table)
    if out.truncated:
        console.print(Text(f"(truncated to {len(rows)} rows)", style="dim"))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return safe_text(value if isinstance(value, str) else json.dumps(value))

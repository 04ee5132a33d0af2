"""Funnels: how many people go through the steps, in order, within a conversion window.

The counting rule (docs/analytics.md has it with examples). Only events with
``from <= timestamp < to`` are considered; events of one person are ordered by
``(timestamp, message_id)``, so "after" is strict in that order and equal timestamps are
resolved by message id.

1. A person enters the funnel at their *first* event matching step 1 (its event name and
   filters).
2. Step k+1 is matched by the person's first event matching step k+1 that comes after the
   event matched for step k and whose timestamp is at most ``conversionWindow`` seconds after
   the step-1 event's (inclusive).
3. A person reaching step k counts once for step k (and for every step before it). Repeats
   of earlier steps change nothing, events before the previous step's match never count.

Per step: the people who reached it; the conversion rate from step 1 and from the previous
step (null when the denominator is 0); the median of the seconds from the previous step's
matched event to this step's, over the people who reached this step.

A breakdown takes the value of the step-1 event that entered the person (for a trait: the
person's trait). The ``breakdownLimit`` values with the most people entering (ties: value
ascending, null last) each get their own list of steps; all other values together are one
more, with ``other: true``.
"""

from __future__ import annotations

from auie.analytics.models import FunnelBreakdownOut, FunnelsIn, FunnelsOut, FunnelStepOut
from auie.analytics.persons import Scope, Sql, conditions, events_cte, needs_traits, value_sql


def funnels(scope: Scope, request: FunnelsIn) -> FunnelsOut:
    q = Sql()
    steps = request.steps
    breakdown = request.breakdown
    targets = [*(f for step in steps for f in step.filters), breakdown]
    ctes = [
        events_cte(
            q,
            start=request.from_,
            end=request.to,
            names={step.event for step in steps},
            targets=targets,
        )
    ]
    join = ""
    if needs_traits(targets):
        ctes.append(scope.traits_cte(q))
        join = "LEFT JOIN person_traits pt ON pt.profile_id = ev.person_id"
    label = value_sql(q, breakdown).text if breakdown is not None else "NULL::VARCHAR"
    flags = ", ".join(
        f"(ev.event_name = {q.bind(step.event)}"
        f" AND {conditions(q, step.filters, person='ev.person_id')}) AS s{i}"
        for i, step in enumerate(steps, start=1)
    )
    ctes.append(
        "m AS (SELECT ev.person_id, ev.timestamp AS t, ev.message_id AS mid,"
        f" {label} AS label, {flags} FROM ev {join})"
    )
    # Each person's first matching event in (t, mid) order is the minimum of the struct
    # {t, mid}: a hash aggregate, much cheaper than sorting every event in a window.
    ctes.append(
        "r1 AS (SELECT person_id, hit.t AS t0, hit.t, hit.mid, hit.label, NULL::BIGINT AS dt"
        " FROM (SELECT person_id, min({'t': t, 'mid': mid, 'label': label}) AS hit"
        " FROM m WHERE s1 GROUP BY person_id))"
    )
    window_us = q.bind(request.conversion_window * 1_000_000)
    for k in range(2, len(steps) + 1):
        ctes.append(
            f"r{k} AS (SELECT person_id, t0, hit.t, hit.mid, label,"
            " epoch_us(hit.t) - epoch_us(previous) AS dt"
            " FROM (SELECT p.person_id, any_value(p.t0) AS t0, any_value(p.t) AS previous,"
            " any_value(p.label) AS label, min({'t': m.t, 'mid': m.mid}) AS hit"
            f" FROM r{k - 1} p JOIN m ON m.person_id = p.person_id AND m.s{k}"
            " AND (m.t > p.t OR (m.t = p.t AND m.mid > p.mid))"
            f" AND epoch_us(m.t) - epoch_us(p.t0) <= {window_us} GROUP BY p.person_id))"
        )
    reached = " UNION ALL ".join(
        f"SELECT label, {k} AS k, dt FROM r{k}" for k in range(1, len(steps) + 1)
    )
    limit = request.breakdown_limit
    ctes.append(
        "labels AS (SELECT label, row_number() OVER"
        " (ORDER BY count(*) DESC, label ASC NULLS LAST) AS rank FROM r1 GROUP BY label)"
    )
    ctes.append(
        f"x AS (SELECT s.k, s.dt, CASE WHEN l.rank <= {limit} THEN s.label END AS label,"
        f" least(l.rank, {limit + 1}) AS rank FROM ({reached}) s"
        " JOIN labels l ON l.label IS NOT DISTINCT FROM s.label)"
    )
    sql = (
        f"WITH {', '.join(ctes)} SELECT grouping(label, rank) = 0 AS split, label, rank, k,"
        " count(*) AS people, median(dt) AS median_us FROM x"
        " GROUP BY GROUPING SETS ((k), (label, rank, k))"
    )
    overall: dict[int, tuple[int, float | None]] = {}
    split: dict[int, tuple[str | None, dict[int, tuple[int, float | None]]]] = {}
    for is_split, value, rank, k, people, median_us in scope.query(sql, q.params).rows:
        cell = (int(people), None if median_us is None else float(median_us) / 1_000_000)
        if is_split:
            split.setdefault(int(rank), (value, {}))[1][int(k)] = cell
        else:
            overall[int(k)] = cell
    breakdowns = []
    if breakdown is not None:
        for rank in sorted(split):
            value, cells = split[rank]
            breakdowns.append(
                FunnelBreakdownOut(
                    breakdown=value, other=rank > limit, steps=_steps(request, cells)
                )
            )
    return FunnelsOut.model_validate(
        {
            "from": request.from_,
            "to": request.to,
            "conversionWindow": request.conversion_window,
            "steps": _steps(request, overall),
            "breakdowns": breakdowns,
        }
    )


def _steps(request: FunnelsIn, cells: dict[int, tuple[int, float | None]]) -> list[FunnelStepOut]:
    out: list[FunnelStepOut] = []
    first = cells.get(1, (0, None))[0]
    previous = first
    for k, step in enumerate(request.steps, start=1):
        count, median = cells.get(k, (0, None))
        out.append(
            FunnelStepOut(
                step=k,
                event=step.event,
                count=count,
                conversion_rate=_rate(count, first),
                conversion_from_previous=_rate(count, previous),
                median_seconds_to_convert=median if k > 1 else None,
            )
        )
        previous = count
    return out


def _rate(count: int, base: int) -> float | None:
    return count / base if base else None

"""Trends: events or people per time bucket, per event name, optionally broken down.

Events with ``from <= timestamp < to`` named one of ``events`` that pass every filter
count in the bucket their timestamp falls in (UTC hours, days, or ISO weeks starting on
Monday; the first bucket starts at ``from`` truncated to the interval). ``events`` counts
events, ``people`` counts distinct people (:mod:`auie.analytics.persons`) per bucket; a
series' ``total`` is the count over the whole range (distinct people for ``people``, which
is not the sum of the buckets).

With a breakdown, each event's series is split by the breakdown's value (text form; a
missing value is its own value, null). Per event, the ``breakdownLimit`` values with the
largest total (ties: value ascending, null last) get their own series, in that order; the
other values together make one last series with ``other: true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from auie.analytics.models import TrendSeries, TrendsIn, TrendsOut
from auie.analytics.persons import Scope, Sql, conditions, events_cte, needs_traits, value_sql
from auie.errors import InvalidRequest

MAX_BUCKETS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def truncate(moment: datetime, interval: str) -> datetime:
    """Start of the UTC hour, day or ISO week (Monday) holding ``moment``."""
    if interval == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    raise ValueError(f"unknown interval {interval!r}")


def bucket_starts(start: datetime, end: datetime, interval: str) -> Iterator[datetime]:
    """Bucket starts from ``start`` truncated, while before ``end``."""
    moment = truncate(start, interval)
    while moment < end:
        yield moment
        moment += _STEP[interval]


def trends(scope: Scope, request: TrendsIn) -> TrendsOut:
    buckets = []
    for bucket in bucket_starts(request.from_, request.to, request.interval):
        buckets.append(bucket)
        if len(buckets) > MAX_BUCKETS:
            raise InvalidRequest(
                f"more than {MAX_BUCKETS} buckets; use a longer interval or a shorter range",
                code="too_many_buckets",
            )
    q = Sql()
    breakdown = request.breakdown
    traits = needs_traits([*request.filters, breakdown])
    people = request.measure == "people"
    ctes = [
        events_cte(
            q,
            start=request.from_,
            end=request.to,
            names=request.events,
            targets=[*request.filters, breakdown],
            person=people or traits,
        )
    ]
    join = ""
    if traits:
        ctes.append(scope.traits_cte(q))
        join = "LEFT JOIN person_traits pt ON pt.profile_id = ev.person_id"
    label = value_sql(q, breakdown).text if breakdown is not None else "NULL::VARCHAR"
    # Buckets are numbered from the first one by integer arithmetic on the microseconds
    # (UTC hours, days and weeks have fixed lengths): date_trunc on a TIMESTAMPTZ goes
    # through ICU for every row and costs more than the rest of a daily trend.
    first_us = q.bind((buckets[0] - _EPOCH) // _MICROSECOND)
    step_us = q.bind(_STEP[request.interval] // _MICROSECOND)
    ctes.append(
        f"f AS (SELECT ev.event_name, {label} AS label,"
        f" (epoch_us(ev.timestamp) - {first_us}) // {step_us} AS bucket, ev.person_id"
        f" FROM ev {join} WHERE {conditions(q, request.filters, person='ev.person_id')})"
    )
    limit = request.breakdown_limit
    # The rows are reduced first (counted per bucket, or made distinct per person and
    # bucket), so labels are computed once and ranking and totals read the small result.
    if people:
        ctes.append("a AS (SELECT DISTINCT event_name, label, bucket, person_id FROM f)")
        rank_by, value = "count(DISTINCT person_id)", "count(DISTINCT person_id)"
    else:
        ctes.append(
            "a AS (SELECT event_name, label, bucket, count(*) AS n FROM f"
            " GROUP BY event_name, label, bucket)"
        )
        rank_by, value = "sum(n)", "sum(n)"
    ctes.append(
        "ranked AS (SELECT event_name, label, row_number() OVER (PARTITION BY event_name"
        f" ORDER BY {rank_by} DESC, label ASC NULLS LAST) AS rank FROM a"
        " GROUP BY event_name, label)"
    )
    ctes.append(
        f"g AS (SELECT a.*, r.rank <= {limit} AS top,"
        f" CASE WHEN r.rank <= {limit} THEN a.label END AS shown,"
        f" least(r.rank, {limit + 1}) AS position FROM a JOIN ranked r"
        " ON r.event_name = a.event_name AND r.label IS NOT DISTINCT FROM a.label)"
    )
    sql = (
        f"WITH {', '.join(ctes)} SELECT event_name, shown, NOT top AS other, position,"
        f" grouping(bucket) = 1 AS whole, bucket, {value} AS value FROM g"
        " GROUP BY GROUPING SETS ((event_name, shown, top, position, bucket),"
        " (event_name, shown, top, position))"
    )
    series: dict[tuple[str, int], TrendSeries] = {}
    for event, value_label, other, rank, whole, bucket, count in scope.query(sql, q.params).rows:
        key = (event, rank)
        found = series.get(key)
        if found is None:
            found = series[key] = TrendSeries(
                event=event,
                breakdown=value_label,
                other=bool(other),
                values=[0] * len(buckets),
                total=0,
            )
        if whole:
            found.total = int(count)
        else:
            found.values[int(bucket)] = int(count)
    order = {name: i for i, name in enumerate(request.events)}
    ordered = sorted(series.items(), key=lambda item: (order[item[0][0]], item[0][1]))
    result = [s for _key, s in ordered]
    if breakdown is None:
        present = {s.event for s in result}
        result += [
            TrendSeries(event=name, values=[0] * len(buckets), total=0)
            for name in request.events
            if name not in present
        ]
        result.sort(key=lambda s: order[s.event])
    return TrendsOut.model_validate(
        {
            "measure": request.measure,
            "interval": request.interval,
            "from": request.from_,
            "to": request.to,
            "buckets": buckets,
            "series": result,
        }
    )

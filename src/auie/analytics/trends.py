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
from datetime import datetime, timedelta

from auie.analytics.models import TrendSeries, TrendsIn, TrendsOut
from auie.analytics.persons import Scope, Sql, conditions, events_cte, needs_traits, value_sql
from auie.errors import InvalidRequest

MAX_BUCKETS = 10_000
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
    ctes.append(
        f"f AS (SELECT ev.event_name, {label} AS label,"
        f" date_trunc('{request.interval}', ev.timestamp) AS bucket, ev.person_id"
        f" FROM ev {join} WHERE {conditions(q, request.filters)})"
    )
    measure = "count(DISTINCT person_id)" if people else "count(*)"
    limit = request.breakdown_limit
    ctes.append(
        "ranked AS (SELECT event_name, label, row_number() OVER (PARTITION BY event_name"
        f" ORDER BY {measure} DESC, label ASC NULLS LAST) AS rank FROM f"
        " GROUP BY event_name, label)"
    )
    ctes.append(
        f"g AS (SELECT f.event_name, f.bucket, f.person_id, r.rank <= {limit} AS top,"
        f" CASE WHEN r.rank <= {limit} THEN f.label END AS label,"
        f" least(r.rank, {limit + 1}) AS rank FROM f JOIN ranked r"
        " ON r.event_name = f.event_name AND r.label IS NOT DISTINCT FROM f.label)"
    )
    sql = (
        f"WITH {', '.join(ctes)} SELECT event_name, label, NOT top AS other, rank,"
        f" grouping(bucket) = 1 AS whole, bucket, {measure} AS value FROM g"
        " GROUP BY GROUPING SETS ((event_name, label, top, rank, bucket),"
        " (event_name, label, top, rank))"
    )
    position = {bucket: i for i, bucket in enumerate(buckets)}
    series: dict[tuple[str, int], TrendSeries] = {}
    for event, value_label, other, rank, whole, bucket, value in scope.query(sql, q.params).rows:
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
            found.total = int(value)
        else:
            found.values[position[bucket]] = int(value)
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

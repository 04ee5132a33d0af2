"""Retention: of the people who first did ``startEvent`` in a period, how many came back.

Only events with ``from <= timestamp < to`` count. A person's cohort is the period (UTC
day, or ISO week from Monday) holding their first ``startEvent`` in the range; cohorts run
from the period holding ``from`` to the last period starting before ``to``, empty ones
included. Period 0 of a cohort is its size; the person returns in period k (k >= 1) if they
did ``returnEvent`` at least once in ``[cohort start + k periods, cohort start + k + 1
periods)``. Cells whose period starts at or after ``to`` cannot be observed yet: null.
Rates are counts divided by the cohort size (null for an empty cohort).
"""

from __future__ import annotations

from datetime import timedelta

from auie.analytics.models import RetentionCohort, RetentionIn, RetentionOut
from auie.analytics.persons import Scope, Sql, events_cte
from auie.analytics.trends import MAX_BUCKETS, bucket_starts
from auie.errors import InvalidRequest

_LENGTH = {"day": timedelta(days=1), "week": timedelta(weeks=1)}


def retention(scope: Scope, request: RetentionIn) -> RetentionOut:
    cohorts = list(bucket_starts(request.from_, request.to, request.period))
    if len(cohorts) > MAX_BUCKETS:
        raise InvalidRequest(f"more than {MAX_BUCKETS} cohorts", code="too_many_buckets")
    length = _LENGTH[request.period]
    q = Sql()
    start, back = q.bind(request.start_event), q.bind(request.return_event)
    period_us = q.bind(int(length.total_seconds()) * 1_000_000)
    ctes = [
        events_cte(
            q,
            start=request.from_,
            end=request.to,
            names={request.start_event, request.return_event},
        ),
        f"c AS (SELECT person_id, date_trunc('{request.period}', min(timestamp)) AS cohort"
        f" FROM ev WHERE event_name = {start} GROUP BY person_id)",
        "r AS (SELECT DISTINCT c.cohort, c.person_id,"
        f" (epoch_us(ev.timestamp) - epoch_us(c.cohort)) // {period_us} AS k"
        f" FROM c JOIN ev ON ev.person_id = c.person_id AND ev.event_name = {back}"
        f" WHERE epoch_us(ev.timestamp) - epoch_us(c.cohort) >= {period_us})",
    ]
    sql = (
        f"WITH {', '.join(ctes)} SELECT cohort, 0 AS k, count(*) FROM c GROUP BY cohort"
        f" UNION ALL SELECT cohort, k, count(*) FROM r WHERE k < {q.bind(request.periods)}"
        " GROUP BY cohort, k"
    )
    counts: dict[tuple[object, int], int] = {}
    for cohort, k, people in scope.query(sql, q.params).rows:
        counts[(cohort, int(k))] = int(people)
    out = []
    for cohort in cohorts:
        size = counts.get((cohort, 0), 0)
        row: list[int | None] = []
        for k in range(request.periods):
            row.append(None if cohort + k * length >= request.to else counts.get((cohort, k), 0))
        rates = [None if c is None or not size else c / size for c in row]
        out.append(RetentionCohort(cohort=cohort, size=size, counts=row, rates=rates))
    return RetentionOut.model_validate(
        {
            "period": request.period,
            "periods": request.periods,
            "from": request.from_,
            "to": request.to,
            "cohorts": out,
        }
    )

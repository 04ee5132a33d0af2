-- Every staged event is in exactly one session: per person, the sessions' events add up
-- to the person's events, and the sessions span the person's first to last event.
with staged as (
    select person_id, count(*) as events, min(event_at) as first_at, max(event_at) as last_at
    from {{ ref('stg_events') }}
    group by person_id
),

sessionized as (
    select person_id, sum(events) as events, min(started_at) as first_at,
        max(ended_at) as last_at
    from {{ ref('sessions') }}
    group by person_id
)

select coalesce(staged.person_id, sessionized.person_id) as person_id
from staged
full outer join sessionized on sessionized.person_id = staged.person_id
where staged.person_id is null
    or sessionized.person_id is null
    or staged.events <> sessionized.events
    or staged.first_at <> sessionized.first_at
    or staged.last_at <> sessionized.last_at

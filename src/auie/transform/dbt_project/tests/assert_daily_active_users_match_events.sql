-- Every day with events has a row; its events and people are those of stg_events.
with expected as (
    select event_date as day, count(distinct person_id) as active_users, count(*) as events
    from {{ ref('stg_events') }}
    group by event_date
)

select coalesce(expected.day, dau.day) as day
from expected
full outer join {{ ref('daily_active_users') }} as dau on dau.day = expected.day
where expected.day is null
    or dau.day is null
    or expected.active_users <> dau.active_users
    or expected.events <> dau.events

-- Per day, the event counts add up to the day's events, and no event name has more
-- people than the day has active people.
with per_day as (
    select day, sum(events) as events, max(people) as most_people
    from {{ ref('event_counts_daily') }}
    group by day
)

select coalesce(per_day.day, dau.day) as day
from per_day
full outer join {{ ref('daily_active_users') }} as dau on dau.day = per_day.day
where per_day.day is null
    or dau.day is null
    or per_day.events <> dau.events
    or per_day.most_people > dau.active_users

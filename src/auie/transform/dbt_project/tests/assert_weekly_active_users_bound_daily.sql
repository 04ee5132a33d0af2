-- A week has at least as many active people as its busiest day, at most the sum of its
-- days, and exactly the events of its days.
with days as (
    select
        {{ auie.period_start('week', 'day') }} as week_start,
        max(active_users) as busiest_day,
        sum(active_users) as day_sum,
        sum(events) as events
    from {{ ref('daily_active_users') }}
    group by 1
)

select coalesce(days.week_start, wau.week_start) as week_start
from days
full outer join {{ ref('weekly_active_users') }} as wau on wau.week_start = days.week_start
where days.week_start is null
    or wau.week_start is null
    or wau.active_users < days.busiest_day
    or wau.active_users > days.day_sum
    or wau.events <> days.events

-- A month has at least as many active people as its busiest day, at most the sum of its
-- days, and exactly the events of its days.
with days as (
    select
        {{ auie.period_start('month', 'day') }} as month_start,
        max(active_users) as busiest_day,
        sum(active_users) as day_sum,
        sum(events) as events
    from {{ ref('daily_active_users') }}
    group by 1
)

select coalesce(days.month_start, mau.month_start) as month_start
from days
full outer join {{ ref('monthly_active_users') }} as mau on mau.month_start = days.month_start
where days.month_start is null
    or mau.month_start is null
    or mau.active_users < days.busiest_day
    or mau.active_users > days.day_sum
    or mau.events <> days.events

{#- One row per person, as of var `as_of` (default: the run's start): what the decision
    service reads. "Last 30 days" = the 30 UTC days ending on as_of's date (and anything
    later). Rebuilt whole on every run (recency moves with the clock). -#}
{{ config(materialized='table') }}

with reference as (
    select {{ auie.as_of() }} as as_of, cast({{ auie.as_of() }} as date) as as_of_date
),

events as (
    select
        stg.person_id,
        stg.event_at,
        stg.event_date,
        stg.event_name,
        case
            when stg.event_date > {{ auie.add_days('reference.as_of_date', -30) }} then 1
            else 0
        end as in_window
    from {{ ref('stg_events') }} as stg
    cross join reference
),

per_person as (
    select
        person_id,
        min(event_at) as first_seen,
        max(event_at) as last_seen,
        cast(count(*) as integer) as events_total,
        cast(sum(in_window) as integer) as frequency,
        cast(count(distinct case when in_window = 1 then event_date end) as integer)
            as active_days_30d
    from events
    group by person_id
),

recent_sessions as (
    select sessions.person_id, cast(count(*) as integer) as sessions_30d
    from {{ ref('sessions') }} as sessions
    cross join reference
    where cast(sessions.ended_at as date) > {{ auie.add_days('reference.as_of_date', -30) }}
    group by sessions.person_id
),

event_ranks as (
    select
        person_id,
        event_name,
        row_number() over (
            partition by person_id
            order by count(*) desc, {{ auie.bytewise('event_name') }}
        ) as event_rank
    from events
    group by person_id, event_name
),

features as (
    select
        per_person.person_id,
        per_person.first_seen,
        per_person.last_seen,
        greatest(
            0,
            {{ auie.days_between('cast(per_person.last_seen as date)', 'reference.as_of_date') }}
        ) as recency_days,
        per_person.frequency,
        coalesce(recent_sessions.sessions_30d, 0) as sessions_30d,
        per_person.active_days_30d,
        per_person.events_total,
        top.event_name as top_event,
        reference.as_of
    from per_person
    cross join reference
    left join recent_sessions on recent_sessions.person_id = per_person.person_id
    left join event_ranks as top on top.person_id = per_person.person_id and top.event_rank = 1
)

select
    person_id,
    first_seen,
    last_seen,
    cast(recency_days as integer) as recency_days,
    frequency,
    cast(sessions_30d as integer) as sessions_30d,
    active_days_30d,
    {{ auie.engagement_score('frequency', 'sessions_30d', 'active_days_30d', 'recency_days') }}
        as engagement_score,
    events_total,
    top_event,
    as_of
from features

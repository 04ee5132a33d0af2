{#- Sessions: runs of one person's events with no gap longer than var
    `session_gap_minutes` (default 30; a gap of exactly the limit continues the session).
    Events are ordered by time, then log position.

    Incremental: the people to recompute are the person_id and previous_person_id of the
    stg_events rows stamped after this model's newest `updated_at` (new events, or events
    re-attributed by an identity change); each such person's sessions are rebuilt from all
    their events (delete+insert on person_id). A post-hook deletes the sessions of people
    left without events. -#}
{{
  config(
    materialized='incremental',
    unique_key='person_id',
    incremental_strategy='delete+insert',
    post_hook="{{ auie.delete_vanished_people(this) }}",
  )
}}

with
{% if is_incremental() %}
changed as (
    select person_id from {{ ref('stg_events') }} as stg
    where {{ auie.changed_since_last_run('stg') }}
    union
    select previous_person_id from {{ ref('stg_events') }} as stg
    where {{ auie.changed_since_last_run('stg') }} and previous_person_id is not null
),
{% endif %}

events as (
    select
        person_id,
        event_at,
        log_partition,
        log_offset,
        type,
        page_path,
        utm_source,
        {{ auie.epoch_us('event_at') }} as event_us
    from {{ ref('stg_events') }}
    {% if is_incremental() %}
    where person_id in (select person_id from changed)
    {% endif %}
),

gaps as (
    select
        events.*,
        case
            when lag(event_us) over by_time is null then 1
            when event_us - lag(event_us) over by_time > {{ auie.session_gap_us() }} then 1
            else 0
        end as starts_session
    from events
    window by_time as (partition by person_id order by event_at, log_partition, log_offset)
),

numbered as (
    select
        gaps.*,
        sum(starts_session) over (
            partition by person_id
            order by event_at, log_partition, log_offset
            rows between unbounded preceding and current row
        ) as session_number
    from gaps
),

ranked as (
    select
        numbered.*,
        row_number() over (
            partition by person_id, session_number
            order by event_at, log_partition, log_offset
        ) as nth,
        case when type = 'page' then row_number() over (
            partition by person_id, session_number, (type = 'page')
            order by event_at, log_partition, log_offset
        ) end as nth_page,
        case when type = 'page' then row_number() over (
            partition by person_id, session_number, (type = 'page')
            order by event_at desc, log_partition desc, log_offset desc
        ) end as nth_page_from_end
    from numbered
)

select
    md5(person_id || ':' || cast(min(event_us) as {{ dbt.type_string() }})) as session_id,
    person_id,
    cast(session_number as integer) as session_number,
    min(event_at) as started_at,
    max(event_at) as ended_at,
    cast(max(event_us) - min(event_us) as double precision) / 1000000 as duration_seconds,
    cast(count(*) as integer) as events,
    cast(sum(case when type = 'page' then 1 else 0 end) as integer) as pages,
    max(case when nth_page = 1 then page_path end) as first_page_path,
    max(case when nth_page_from_end = 1 then page_path end) as last_page_path,
    max(case when nth = 1 then utm_source end) as utm_source,
    {{ auie.run_timestamp() }} as updated_at
from ranked
group by person_id, session_number

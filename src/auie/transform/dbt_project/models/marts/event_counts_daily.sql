{#- Events and distinct people per event name and UTC day.

    Incremental: the days of the stg_events rows stamped after the model's newest
    `updated_at` are recounted whole (delete+insert on day). -#}
{{
  config(
    materialized='incremental',
    unique_key='day',
    incremental_strategy='delete+insert',
  )
}}

with events as (
    select event_date as day, event_name, person_id
    from {{ ref('stg_events') }}
    {% if is_incremental() %}
    where event_date in (
        select distinct event_date from {{ ref('stg_events') }} as stg
        where {{ auie.changed_since_last_run('stg') }}
    )
    {% endif %}
)

select
    day,
    event_name,
    cast(count(*) as integer) as events,
    cast(count(distinct person_id) as integer) as people,
    {{ auie.run_timestamp() }} as updated_at
from events
group by day, event_name

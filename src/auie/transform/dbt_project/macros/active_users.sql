{#- Active people and events per period (day, week or month), UTC calendar periods
    (weeks start on Monday).

    Incremental: the periods recomputed are those of the stg_events rows stamped after the
    model's newest `updated_at` (new events, or events re-attributed to another person);
    each is recounted from all its events (delete+insert on the period). -#}
{% macro active_users(period_column, part) %}
{{
  config(
    materialized='incremental',
    unique_key=period_column,
    incremental_strategy='delete+insert',
  )
}}
{%- set period = "event_date" if part == "day" else auie.period_start(part, "event_date") %}

with events as (
    select {{ period }} as {{ period_column }}, person_id
    from {{ ref('stg_events') }}
    {% if is_incremental() %}
    where {{ period }} in (
        select distinct {{ period }} from {{ ref('stg_events') }} as stg
        where {{ auie.changed_since_last_run('stg') }}
    )
    {% endif %}
)

select
    {{ period_column }},
    cast(count(distinct person_id) as integer) as active_users,
    cast(count(*) as integer) as events,
    {{ auie.run_timestamp() }} as updated_at
from events
group by {{ period_column }}
{% endmacro %}

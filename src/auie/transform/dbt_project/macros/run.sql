{#- The run's start time (UTC, naive): stamped on every row a run (re)computes. It is the
    watermark of the incremental models: a mart recomputes what upstream stamped later
    than its own newest `updated_at`. -#}
{% macro run_timestamp() -%}
cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}

{#- Reference time of user_features: var `as_of` (ISO, UTC) or the run's start. -#}
{% macro as_of() -%}
{%- set given = var('as_of', '') -%}
{%- if given -%}
cast('{{ given | replace("T", " ") | replace("Z", "") | replace("+00:00", "") }}' as timestamp)
{%- else -%}
{{ auie.run_timestamp() }}
{%- endif -%}
{%- endmacro %}

{#- Older than any event: the watermark of an empty model. -#}
{% macro epoch_start() -%}
cast('1900-01-01 00:00:00' as timestamp)
{%- endmacro %}

{#- The session gap in microseconds. -#}
{% macro session_gap_us() -%}
{{ (var('session_gap_minutes') | float * 60000000) | int }}
{%- endmacro %}

{#- Rows of `stg` that `this` has not absorbed yet (see run_timestamp). -#}
{% macro changed_since_last_run(stg) -%}
{{ stg }}.transformed_at > (select coalesce(max(updated_at), {{ auie.epoch_start() }}) from {{ this }})
{%- endmacro %}

{#- Engagement score, 0..100 (docs/transform.md):
      35 * min(frequency, 100) / 100     events in the last 30 days
    + 25 * min(sessions_30d, 20) / 20    sessions in the last 30 days
    + 25 * active_days_30d / 30          days with an event in the last 30 days
    + 15 * max(0, 30 - recency_days) / 30  how recently the person was seen
    rounded to 2 decimals. -#}
{% macro engagement_score(frequency, sessions_30d, active_days_30d, recency_days) -%}
{{ auie.round_to(
    "35.0 * least(" ~ frequency ~ ", 100) / 100"
    ~ " + 25.0 * least(" ~ sessions_30d ~ ", 20) / 20"
    ~ " + 25.0 * least(" ~ active_days_30d ~ ", 30) / 30"
    ~ " + 15.0 * greatest(0, 30 - " ~ recency_days ~ ") / 30", 2) }}
{%- endmacro %}

{#- For stg_events: identity-map rows written after the newest row stg_events holds. -#}
{% macro changed_since(column) -%}
{{ column }} > (select coalesce(max(transformed_at), {{ auie.epoch_start() }}) from {{ this }})
{%- endmacro %}

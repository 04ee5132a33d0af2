{#- Dialect differences between DuckDB and PostgreSQL, one macro each, through
    adapter.dispatch: every model is written once against these. -#}

{#- A timestamptz as a naive UTC timestamp (every mart's times are UTC). -#}
{% macro utc(expr) %}{{ return(adapter.dispatch('utc', 'auie')(expr)) }}{% endmacro %}
{% macro default__utc(expr) %}({{ expr }} at time zone 'UTC'){% endmacro %}
{% macro duckdb__utc(expr) %}timezone('UTC', {{ expr }}){% endmacro %}

{#- Microseconds since the epoch of a naive timestamp, as a bigint. -#}
{% macro epoch_us(expr) %}{{ return(adapter.dispatch('epoch_us', 'auie')(expr)) }}{% endmacro %}
{% macro default__epoch_us(expr) %}cast(floor(extract(epoch from {{ expr }}) * 1000000) as bigint){% endmacro %}
{% macro duckdb__epoch_us(expr) %}epoch_us({{ expr }}){% endmacro %}

{#- A text field of a JSON object held as text (null if absent or not JSON text). -#}
{% macro json_text(expr, key) %}{{ return(adapter.dispatch('json_text', 'auie')(expr, key)) }}{% endmacro %}
{% macro default__json_text(expr, key) %}(cast({{ expr }} as jsonb) ->> '{{ key }}'){% endmacro %}
{% macro duckdb__json_text(expr, key) %}json_extract_string({{ expr }}, '$.{{ key }}'){% endmacro %}

{#- JSON text kept as the engine's JSON type. -#}
{% macro as_json(expr) %}{{ return(adapter.dispatch('as_json', 'auie')(expr)) }}{% endmacro %}
{% macro default__as_json(expr) %}cast({{ expr }} as jsonb){% endmacro %}
{% macro duckdb__as_json(expr) %}cast({{ expr }} as json){% endmacro %}

{#- A date moved by n days. -#}
{% macro add_days(date_expr, n) %}{{ return(adapter.dispatch('add_days', 'auie')(date_expr, n)) }}{% endmacro %}
{% macro default__add_days(date_expr, n) %}cast({{ date_expr }} + ({{ n }}) as date){% endmacro %}
{% macro duckdb__add_days(date_expr, n) %}cast(date_add({{ date_expr }}, to_days(cast({{ n }} as integer))) as date){% endmacro %}

{#- Whole days from one date to a later one. -#}
{% macro days_between(start_date, end_date) %}{{ return(adapter.dispatch('days_between', 'auie')(start_date, end_date)) }}{% endmacro %}
{% macro default__days_between(start_date, end_date) %}cast(({{ end_date }}) - ({{ start_date }}) as integer){% endmacro %}
{% macro duckdb__days_between(start_date, end_date) %}cast(date_diff('day', {{ start_date }}, {{ end_date }}) as integer){% endmacro %}

{#- The first day of the ISO week (Monday) or month of a date. -#}
{% macro period_start(part, date_expr) %}{{ return(adapter.dispatch('period_start', 'auie')(part, date_expr)) }}{% endmacro %}
{% macro default__period_start(part, date_expr) %}cast(date_trunc('{{ part }}', cast({{ date_expr }} as timestamp)) as date){% endmacro %}

{#- Text compared byte-wise (PostgreSQL otherwise sorts by the database's locale). -#}
{% macro bytewise(expr) %}{{ return(adapter.dispatch('bytewise', 'auie')(expr)) }}{% endmacro %}
{% macro default__bytewise(expr) %}({{ expr }} collate "C"){% endmacro %}
{% macro duckdb__bytewise(expr) %}{{ expr }}{% endmacro %}

{#- A double rounded to n decimals (PostgreSQL rounds only numerics). -#}
{% macro round_to(expr, n) %}{{ return(adapter.dispatch('round_to', 'auie')(expr, n)) }}{% endmacro %}
{% macro default__round_to(expr, n) %}cast(round(cast({{ expr }} as numeric), {{ n }}) as double precision){% endmacro %}
{% macro duckdb__round_to(expr, n) %}cast(round(cast({{ expr }} as decimal(18, 6)), {{ n }}) as double){% endmacro %}

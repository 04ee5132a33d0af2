{#- The current profile of every user and anonymous id: the latest `identities` row per
    (id_type, id_value) by changed_at.

    Incremental: a run writes only the identifiers whose profile changed (or that are
    new), stamped with the run's time in `transformed_at`; stg_events uses that stamp to
    find the events it must re-attribute. -#}
{{
  config(
    materialized='incremental',
    unique_key=['id_type', 'id_value'],
    incremental_strategy='delete+insert',
  )
}}

with ranked as (
    select
        id_type,
        id_value,
        profile_id,
        changed_at,
        row_number() over (
            partition by id_type, id_value
            order by changed_at desc, {{ auie.bytewise('profile_id') }} desc
        ) as newest
    from {{ source('lake', 'identities') }}
    where id_type in ('user_id', 'anonymous_id')
),

latest as (
    select id_type, id_value, profile_id, changed_at from ranked where newest = 1
)

select
    latest.id_type,
    latest.id_value,
    latest.profile_id,
    latest.changed_at,
    {{ auie.run_timestamp() }} as transformed_at
from latest
{% if is_incremental() %}
left join {{ this }} as known
    on known.id_type = latest.id_type and known.id_value = latest.id_value
where known.profile_id is null or known.profile_id <> latest.profile_id
{% endif %}

{#- Staged events: one row per lake event (key: log_partition, log_offset), attributed to
    a person through the current identity map:

        person_id = profile of user_id if it has one,
                    else profile of anonymous_id,
                    else 'pseudo:' || the anonymous id's hash (else the user id's) for an
                         event the processor pseudonymised (its ids are unlinked hashes:
                         a person without analytics consent; grouped like the next rule),
                    else 'anon:' || anonymous_id (else 'user:' || user_id).

    Incremental, two kinds of rows per run, both stamped `transformed_at` = the run's time:
    - new events: lake events past the highest log offset already staged, per partition
      (the processor appends each log partition to the lake in offset order);
    - re-attributed events: staged events whose user or anonymous id changed profile since
      the last run (int_identity_map), when their person_id changes; `previous_person_id`
      keeps the person they belonged to, so marts recompute (or delete) that person too. -#}
{{
  config(
    materialized='incremental',
    unique_key=['log_partition', 'log_offset'],
    incremental_strategy='delete+insert',
  )
}}

with lake_events as (
    select
        log_partition,
        log_offset,
        message_id,
        type,
        case when type = 'track' then coalesce(event, type) else type end as event_name,
        user_id,
        anonymous_id,
        case
            when user_id = user_hash or anonymous_id = anonymous_hash
                then 'pseudo:' || coalesce(anonymous_hash, user_hash)
        end as pseudonym,
        source_id,
        {{ auie.utc('"timestamp"') }} as event_at,
        {{ auie.utc('received_at') }} as received_at,
        coalesce(page_path, context_page_path, {{ auie.json_text('properties', 'path') }})
            as page_path,
        coalesce(context_page_url, {{ auie.json_text('properties', 'url') }}) as page_url,
        utm_source,
        utm_medium,
        utm_campaign,
        {{ auie.as_json('properties') }} as properties,
        {{ auie.as_json('traits') }} as traits
    from {{ source('lake', 'events') }} as e
    {% if is_incremental() %}
    where not exists (
        select 1
        from (
            select log_partition, max(log_offset) as log_offset
            from {{ this }}
            group by log_partition
        ) as staged
        where staged.log_partition = e.log_partition and staged.log_offset >= e.log_offset
    )
    {% endif %}
),

candidates as (
    select
        lake_events.*,
        cast(null as {{ dbt.type_string() }}) as old_person_id,
        cast(null as {{ dbt.type_string() }}) as old_previous_person_id
    from lake_events
    {% if is_incremental() %}
    union all
    select
        log_partition,
        log_offset,
        message_id,
        type,
        event_name,
        user_id,
        anonymous_id,
        -- (a pseudonymised event's ids are hashes: never in the identity map, never re-read)
        cast(null as {{ dbt.type_string() }}) as pseudonym,
        source_id,
        event_at,
        received_at,
        page_path,
        page_url,
        utm_source,
        utm_medium,
        utm_campaign,
        properties,
        traits,
        person_id as old_person_id,
        previous_person_id as old_previous_person_id
    from {{ this }} as staged
    where staged.user_id in (
            select id_value from {{ ref('int_identity_map') }}
            where id_type = 'user_id' and {{ auie.changed_since('transformed_at') }}
        )
        or staged.anonymous_id in (
            select id_value from {{ ref('int_identity_map') }}
            where id_type = 'anonymous_id' and {{ auie.changed_since('transformed_at') }}
        )
    {% endif %}
),

attributed as (
    select
        candidates.*,
        coalesce(
            users.profile_id,
            anonymous.profile_id,
            candidates.pseudonym,
            'anon:' || candidates.anonymous_id,
            'user:' || candidates.user_id
        ) as person_id
    from candidates
    left join {{ ref('int_identity_map') }} as users
        on users.id_type = 'user_id' and users.id_value = candidates.user_id
    left join {{ ref('int_identity_map') }} as anonymous
        on anonymous.id_type = 'anonymous_id' and anonymous.id_value = candidates.anonymous_id
)

select
    log_partition,
    log_offset,
    message_id,
    type,
    event_name,
    user_id,
    anonymous_id,
    person_id,
    case
        when old_person_id is not null and old_person_id <> person_id then old_person_id
        else old_previous_person_id
    end as previous_person_id,
    source_id,
    event_at,
    cast(event_at as date) as event_date,
    received_at,
    page_path,
    page_url,
    utm_source,
    utm_medium,
    utm_campaign,
    properties,
    traits,
    {{ auie.run_timestamp() }} as transformed_at
from attributed
-- re-read staged events stay only when their person changed
where old_person_id is null or old_person_id <> person_id

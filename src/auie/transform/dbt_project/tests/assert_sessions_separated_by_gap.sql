-- A person's consecutive sessions are more than the session gap apart and never overlap.
with ordered as (
    select
        person_id,
        session_number,
        started_at,
        {{ auie.epoch_us('started_at') }} as start_us,
        lag({{ auie.epoch_us('ended_at') }}) over (
            partition by person_id order by started_at
        ) as previous_end_us,
        lag(session_number) over (partition by person_id order by started_at) as previous_number
    from {{ ref('sessions') }}
)

select person_id, session_number
from ordered
where (previous_end_us is not null and start_us - previous_end_us <= {{ auie.session_gap_us() }})
    or (previous_number is null and session_number <> 1)
    or (previous_number is not null and session_number <> previous_number + 1)

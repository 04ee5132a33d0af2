-- One row per person of stg_events, with counts that agree with each other.
with people as (
    select person_id, count(*) as events from {{ ref('stg_events') }} group by person_id
)

select coalesce(people.person_id, features.person_id) as person_id
from people
full outer join {{ ref('user_features') }} as features on features.person_id = people.person_id
where people.person_id is null
    or features.person_id is null
    or features.events_total <> people.events
    or features.frequency > features.events_total
    or features.active_days_30d > features.frequency
    or features.first_seen > features.last_seen
    or (features.frequency = 0 and features.active_days_30d <> 0)

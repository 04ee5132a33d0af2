-- Every lake decision is one row, and every reward of a logged decision is counted once.
select 1 as problem
from (
    select count(*) as decisions, coalesce(sum(reward_count), 0) as rewards
    from {{ ref('decision_training') }}
) as trained
cross join (select count(*) as decisions from {{ source('lake', 'decisions') }}) as lake
cross join (
    select count(*) as rewards
    from {{ source('lake', 'rewards') }} as r
    where exists (
        select 1 from {{ source('lake', 'decisions') }} as d
        where d.event_id = r.event_id and d.decision_point = r.decision_point
    )
) as paid
where trained.decisions <> lake.decisions or trained.rewards <> paid.rewards

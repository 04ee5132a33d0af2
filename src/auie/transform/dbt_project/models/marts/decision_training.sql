{#- One row per logged decision with its rewards aggregated: the training and evaluation view
    of the decision service's log (lake tables decisions and rewards, matched by event_id and
    decision_point). A decision without rewards has reward_count 0 and null aggregates.
    Rebuilt whole on every run. -#}
{{ config(materialized='table') }}

with ranked_rewards as (
    select
        event_id,
        decision_point,
        value,
        "timestamp" as rewarded_at,
        row_number() over (
            partition by event_id, decision_point
            order by "timestamp", log_partition, log_offset
        ) as position
    from {{ source('lake', 'rewards') }}
),

rewards as (
    select
        event_id,
        decision_point,
        cast(count(*) as integer) as reward_count,
        sum(value) as reward_sum,
        max(case when position = 1 then value end) as reward_earliest,
        min(rewarded_at) as first_reward_at
    from ranked_rewards
    group by event_id, decision_point
)

select
    d.event_id,
    d.decision_point,
    d.user_id,
    d.anonymous_id,
    d.user_hash,
    d.anonymous_hash,
    d.profile_id,
    {{ auie.utc('d."timestamp"') }} as decided_at,
    d.context,
    d.actions,
    d.excluded_actions,
    d.probabilities,
    d.chosen_action,
    d.chosen_probability,
    d.policy_version,
    d.arm,
    d.learn,
    d.deferred,
    coalesce(r.reward_count, 0) as reward_count,
    r.reward_sum,
    r.reward_earliest,
    {{ auie.utc('r.first_reward_at') }} as first_reward_at
from {{ source('lake', 'decisions') }} as d
left join rewards as r
    on r.event_id = d.event_id and r.decision_point = d.decision_point

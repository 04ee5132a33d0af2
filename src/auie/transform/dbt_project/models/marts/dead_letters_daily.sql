{#- Dead letters per UTC day (of receipt), stage and code. Rebuilt whole on every run. -#}
{{ config(materialized='table') }}

select
    cast({{ auie.utc('received_at') }} as date) as day,
    stage,
    code,
    cast(count(*) as integer) as letters
from {{ source('lake', 'dead_letters') }}
group by 1, 2, 3

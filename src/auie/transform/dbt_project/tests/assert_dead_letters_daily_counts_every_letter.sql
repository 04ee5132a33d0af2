-- Every dead letter of the lake is counted once.
select 1 as problem
from (select coalesce(sum(letters), 0) as letters from {{ ref('dead_letters_daily') }}) as counted
cross join (select count(*) as letters from {{ source('lake', 'dead_letters') }}) as lake
where counted.letters <> lake.letters

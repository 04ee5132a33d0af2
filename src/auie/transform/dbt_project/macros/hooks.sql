{#- Post-hook of `sessions`: delete the sessions of people who no longer have any event
    (after an identity merge their events belong to another person). -#}
{% macro delete_vanished_people(relation) %}
delete from {{ relation }}
where person_id not in (select person_id from {{ ref('stg_events') }})
{% endmacro %}

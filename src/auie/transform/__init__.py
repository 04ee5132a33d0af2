"""The transformation layer: a dbt project over the lake, building the marts (sessions,
active users, event counts, user features) on DuckDB or PostgreSQL. See docs/transform.md."""

{{ auie.active_users('week_start', 'week') }}

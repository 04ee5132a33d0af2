{{ auie.active_users('month_start', 'month') }}

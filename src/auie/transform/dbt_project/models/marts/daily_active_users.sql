{{ auie.active_users('day', 'day') }}

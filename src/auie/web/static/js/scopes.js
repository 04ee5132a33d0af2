// The scopes the pages need (src/auie/auth/scopes.py).
export const ANALYTICS_READ = "analytics:read";
export const PROFILES_READ = "profiles:read";
export const DECIDE = "decide";

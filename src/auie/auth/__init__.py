"""Authentication: write keys (ingest), OAuth2 client credentials, JWT access tokens, scopes.

Kept import-light on purpose: the table module is imported by the migrations.
"""

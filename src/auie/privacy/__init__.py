"""Protect: consent, access export, erasure, field encryption, pseudonymisation, retention,
audit."""

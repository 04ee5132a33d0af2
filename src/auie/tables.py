"""Imports every domain's tables so the shared metadata knows them all (for Alembic)."""

from auie.analytics import tables as analytics_tables
from auie.auth import tables as auth_tables
from auie.process import tables as process_tables
from auie.tenancy import tables as tenancy_tables

__all__ = ["analytics_tables", "auth_tables", "process_tables", "tenancy_tables"]

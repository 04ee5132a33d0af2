"""Workspaces, their sources and the sources' write keys."""

from auie.tenancy.store import (
    KeyIdentity,
    NewWriteKey,
    Source,
    TenancyStore,
    Workspace,
    WriteKeyInfo,
)

__all__ = ["KeyIdentity", "NewWriteKey", "Source", "TenancyStore", "Workspace", "WriteKeyInfo"]

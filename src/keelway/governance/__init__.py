"""Governance: users and roles, permission checks and the audit log."""

from keelway.governance.audit import AuditLog, AuditRecord
from keelway.governance.errors import (
    Conflict,
    Forbidden,
    GovernanceError,
    Invalid,
    NotFound,
    Unauthenticated,
)
from keelway.governance.roles import (
    ALL_TEAMS,
    ROLES,
    Grant,
    Permission,
    Principal,
)
from keelway.governance.users import UserRecord, UserStore

__all__ = [
    "ALL_TEAMS",
    "ROLES",
    "AuditLog",
    "AuditRecord",
    "Conflict",
    "Forbidden",
    "GovernanceError",
    "Grant",
    "Invalid",
    "NotFound",
    "Permission",
    "Principal",
    "Unauthenticated",
    "UserRecord",
    "UserStore",
]

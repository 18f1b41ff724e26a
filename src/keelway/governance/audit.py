"""The audit log: every administrative action, allowed or denied.

Allowed actions are written in the same transaction as the change they
describe, so the log never shows a change that did not happen nor misses one
that did. Denied actions are written in a transaction of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keelway.governance.errors import Forbidden
from keelway.governance.roles import Permission, Principal, roles_with
from keelway.store.database import Database, as_utc
from keelway.store.models import AuditEvent

MAX_TARGET = 400
MAX_TEAM = 200

ALLOWED = "allowed"
DENIED = "denied"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored audit event."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    team: str | None
    outcome: str
    reason: str | None
    details: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "team": self.team,
            "outcome": self.outcome,
            "reason": self.reason,
            "details": self.details,
        }


def _bounded(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(
        row.id,
        as_utc(row.at),
        row.actor,
        row.action,
        row.target,
        row.team,
        row.outcome,
        row.reason,
        row.details,
    )


class AuditLog:
    """Writes and reads audit events, and checks permissions on the way."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(
        self,
        session: Session,
        actor: Principal,
        action: str,
        target: str | None,
        *,
        team: str | None = None,
        outcome: str = ALLOWED,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Add an event to ``session``'s transaction."""
        session.add(
            AuditEvent(
                at=datetime.now(UTC),
                actor=actor.name,
                action=action,
                # Cut to the columns' sizes: a denied request's target may
                # carry any text the caller sent.
                target=_bounded(target, MAX_TARGET),
                team=_bounded(team, MAX_TEAM),
                outcome=outcome,
                reason=reason,
                details=details,
            )
        )

    def record(
        self,
        actor: Principal,
        action: str,
        target: str | None,
        *,
        team: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record an allowed action in a transaction of its own.

        For changes made by stores outside this package, whose transaction
        the audit log cannot join.
        """
        with self.database.session() as session, session.begin():
            self.add(session, actor, action, target, team=team, details=details)

    def deny(
        self,
        actor: Principal,
        action: str,
        target: str | None,
        reason: str,
        *,
        team: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Forbidden:
        """Record a denied action in its own transaction; return the 403 to raise."""
        with self.database.session() as session, session.begin():
            self.add(
                session,
                actor,
                action,
                target,
                team=team,
                outcome=DENIED,
                reason=reason,
                details=details,
            )
        return Forbidden(reason)

    def require(
        self,
        actor: Principal,
        permission: Permission,
        action: str,
        target: str | None,
        *,
        team: str | None = None,
    ) -> None:
        """Raise Forbidden, recording the denial, unless ``actor`` may do it."""
        if actor.can(permission, team):
            return
        where = f" for team {team!r}" if team else ""
        roles = ", ".join(actor.roles) or "no roles"
        granting = ", ".join(roles_with(permission))
        reason = (
            f"{actor.name} ({roles}) lacks permission {permission.value}{where}; "
            f"roles that grant it: {granting}"
        )
        raise self.deny(actor, action, target, reason, team=team)

    def list(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Return the newest events first, filtered by exact values."""
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if actor is not None:
            query = query.where(AuditEvent.actor == actor)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        if target is not None:
            query = query.where(AuditEvent.target == target)
        if outcome is not None:
            query = query.where(AuditEvent.outcome == outcome)
        with self.database.session() as session:
            return [_record(row) for row in session.scalars(query)]

"""Users of keelway's admin API and CLI, with their role grants.

A user authenticates with a key of its own (``kwu-`` followed by 256 random
bits), stored as a SHA-256 hash like virtual keys are.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keelway.governance.audit import AuditLog
from keelway.governance.errors import Conflict, Invalid, NotFound, Unauthenticated
from keelway.governance.roles import (
    ALL_TEAMS,
    ROLES,
    Grant,
    Permission,
    Principal,
)
from keelway.store.database import Database
from keelway.store.keys import hash_key
from keelway.store.models import RoleGrant, User

USER_KEY_PREFIX = "kwu-"
MAX_NAME_LENGTH = 200
USER_KEY_ENV = "KEELWAY_USER_KEY"


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored user without its key, which keelway never stores."""

    id: str
    name: str
    prefix: str
    grants: tuple[Grant, ...]
    created_at: datetime
    created_by: str | None
    disabled_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "roles": [{"role": g.role, "team": g.team} for g in self.grants],
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
        }


def _grants(rows: list[RoleGrant]) -> tuple[Grant, ...]:
    return tuple(sorted(Grant(row.role, row.team) for row in rows))


# Actor names of the master key and of the CLI on a store without users.
RESERVED_NAMES = ("master", "local-admin")


def _check_name(name: str) -> None:
    if name in RESERVED_NAMES:
        raise Invalid(f"user name {name!r} is reserved; choose another")
    if not name.strip():
        raise Invalid("user name must not be empty or only whitespace")
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(
            f"user name is {len(name)} characters long; the maximum is "
            f"{MAX_NAME_LENGTH}"
        )


def _check_grant(role: str, team: str | None) -> Grant:
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    if team is not None and (not team.strip() or len(team) > MAX_NAME_LENGTH):
        raise Invalid(f"invalid team name {team!r}")
    return Grant(role, team or ALL_TEAMS)


class UserStore:
    """Domain verbs over the users and role_grants tables."""

    def __init__(self, database: Database, audit: AuditLog) -> None:
        self.database = database
        self.audit = audit

    def has_users(self) -> bool:
        with self.database.session() as session:
            return bool(session.scalar(select(func.count()).select_from(User)))

    def authenticate(self, secret: str) -> Principal:
        """Return the principal whose key this is; raise Unauthenticated otherwise."""
        with self.database.session() as session:
            user = session.scalar(select(User).where(User.key_hash == hash_key(secret)))
            if user is None:
                raise Unauthenticated("invalid user key")
            if user.disabled_at is not None:
                raise Unauthenticated(f"user {user.name!r} is disabled")
            rows = list(
                session.scalars(select(RoleGrant).where(RoleGrant.user_id == user.id))
            )
            return Principal(user.name, "user", _grants(rows), user.id)

    def _require_grant(self, actor: Principal, grant: Grant, action: str) -> None:
        team = None if grant.team == ALL_TEAMS else grant.team
        self.audit.require(
            actor, Permission.MANAGE_USERS, action, f"role:{grant}", team=team
        )

    def create(
        self, actor: Principal, name: str, grants: list[tuple[str, str | None]]
    ) -> tuple[UserRecord, str]:
        """Create a user with roles; return it and its key, which is not kept."""
        _check_name(name)
        wanted = [_check_grant(role, team) for role, team in grants]
        if not wanted:
            self.audit.require(actor, Permission.MANAGE_USERS, "user.create", name)
        for grant in wanted:
            self._require_grant(actor, grant, "user.create")
        secret = USER_KEY_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        user = User(
            id=uuid.uuid4().hex,
            name=name,
            key_hash=hash_key(secret),
            key_prefix=secret[:10],
            created_at=now,
            created_by=actor.name,
        )
        try:
            with self.database.session() as session, session.begin():
                session.add(user)
                session.flush()
                for grant in set(wanted):
                    session.add(self._grant_row(user.id, grant, actor, now))
                self.audit.add(
                    session,
                    actor,
                    "user.create",
                    f"user:{name}",
                    details={"roles": [str(g) for g in sorted(set(wanted))]},
                )
        except IntegrityError:
            raise Conflict(f"a user named {name!r} already exists") from None
        return self.get(name), secret

    @staticmethod
    def _grant_row(
        user_id: str, grant: Grant, actor: Principal, now: datetime
    ) -> RoleGrant:
        return RoleGrant(
            id=uuid.uuid4().hex,
            user_id=user_id,
            role=grant.role,
            team=grant.team,
            granted_at=now,
            granted_by=actor.name,
        )

    def _user(self, session: Session, name: str) -> User:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user

    def get(self, name: str) -> UserRecord:
        with self.database.session() as session:
            return self._to_record(session, self._user(session, name))

    @staticmethod
    def _to_record(session: Session, user: User) -> UserRecord:
        rows = list(
            session.scalars(select(RoleGrant).where(RoleGrant.user_id == user.id))
        )
        return UserRecord(
            user.id,
            user.name,
            user.key_prefix,
            _grants(rows),
            user.created_at,
            user.created_by,
            user.disabled_at,
        )

    def list(self, actor: Principal) -> list[UserRecord]:
        """Return every user with their roles; any user may list them."""
        with self.database.session() as session:
            users = session.scalars(select(User).order_by(User.name))
            return [self._to_record(session, user) for user in users]

    def grant(
        self, actor: Principal, name: str, role: str, team: str | None
    ) -> UserRecord:
        """Grant a user a role; granting one the user already has changes nothing."""
        grant = _check_grant(role, team)
        self._require_grant(actor, grant, "role.grant")
        with self.database.session() as session, session.begin():
            user = self._user(session, name)
            held = session.scalar(
                select(RoleGrant).where(
                    RoleGrant.user_id == user.id,
                    RoleGrant.role == grant.role,
                    RoleGrant.team == grant.team,
                )
            )
            if held is None:
                session.add(self._grant_row(user.id, grant, actor, datetime.now(UTC)))
                self.audit.add(
                    session,
                    actor,
                    "role.grant",
                    f"user:{name}",
                    details={"role": grant.role, "team": grant.team},
                )
        return self.get(name)

    def revoke(
        self, actor: Principal, name: str, role: str, team: str | None
    ) -> UserRecord:
        """Take a role from a user; raise NotFound if the user does not hold it."""
        grant = _check_grant(role, team)
        self._require_grant(actor, grant, "role.revoke")
        with self.database.session() as session, session.begin():
            user = self._user(session, name)
            held = session.scalar(
                select(RoleGrant).where(
                    RoleGrant.user_id == user.id,
                    RoleGrant.role == grant.role,
                    RoleGrant.team == grant.team,
                )
            )
            if held is None:
                raise NotFound(f"user {name!r} does not hold role {grant}")
            session.delete(held)
            self.audit.add(
                session,
                actor,
                "role.revoke",
                f"user:{name}",
                details={"role": grant.role, "team": grant.team},
            )
        return self.get(name)

"""Roles, the permissions each grants, and the principal behind an action.

A role is granted for one team or, with team ``*``, for every team. A
permission checked for a team passes when the principal has a role that
grants it for that team or for every team. Objects without a team (a prompt
created with no team) need a role held for every team.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ALL_TEAMS = "*"


class Permission(StrEnum):
    MANAGE_USERS = "users.manage"
    MANAGE_KEYS = "keys.manage"
    READ_PROMPTS = "prompts.read"
    WRITE_PROMPTS = "prompts.write"
    REVIEW_PROMPTS = "prompts.review"
    MOVE_LABELS = "prompts.label"
    READ_EXPERIMENTS = "experiments.read"
    MANAGE_EXPERIMENTS = "experiments.manage"
    READ_AUDIT = "audit.read"
    READ_EVALS = "evals.read"
    WRITE_DATASETS = "datasets.write"
    RUN_EVALS = "evals.run"


_READ = {Permission.READ_PROMPTS, Permission.READ_EXPERIMENTS, Permission.READ_EVALS}

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    # Approvers review versions and move labels, protected ones included.
    # They run eval gates too, which a protected label can require.
    "approver": frozenset(
        {
            *_READ,
            Permission.REVIEW_PROMPTS,
            Permission.MOVE_LABELS,
            Permission.RUN_EVALS,
        }
    ),
    # Prompt engineers write versions and datasets and run experiments and
    # evals. Only approved versions can take a protected label, whoever
    # moves it.
    "prompt_engineer": frozenset(
        {
            *_READ,
            Permission.WRITE_PROMPTS,
            Permission.MOVE_LABELS,
            Permission.MANAGE_EXPERIMENTS,
            Permission.WRITE_DATASETS,
            Permission.RUN_EVALS,
        }
    ),
    # Operators run the service: keys, label moves and rollbacks, experiments.
    "operator": frozenset(
        {
            *_READ,
            Permission.MANAGE_KEYS,
            Permission.MOVE_LABELS,
            Permission.MANAGE_EXPERIMENTS,
            Permission.RUN_EVALS,
        }
    ),
    "auditor": frozenset({*_READ, Permission.READ_AUDIT}),
    "viewer": frozenset(_READ),
}

ROLES = tuple(ROLE_PERMISSIONS)


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """One role for one team, or for every team when ``team`` is ``*``."""

    role: str
    team: str

    def __str__(self) -> str:
        return self.role if self.team == ALL_TEAMS else f"{self.role}@{self.team}"


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity behind an action: a user, the master key, or the local bootstrap.

    ``kind`` is ``user``, ``master`` (the gateway's master key) or ``local``
    (the CLI on a store that has no users yet, which may act as an admin so
    that the first admin can be created).
    """

    name: str
    kind: str
    grants: tuple[Grant, ...] = ()
    user_id: str | None = None

    @classmethod
    def master(cls) -> Principal:
        return cls("master", "master", (Grant("admin", ALL_TEAMS),))

    @classmethod
    def local(cls) -> Principal:
        return cls("local-admin", "local", (Grant("admin", ALL_TEAMS),))

    def can(self, permission: Permission, team: str | None = None) -> bool:
        """Return whether a grant gives ``permission`` for ``team``."""
        for grant in self.grants:
            if permission not in ROLE_PERMISSIONS.get(grant.role, ()):
                continue
            if grant.team == ALL_TEAMS or (team is not None and grant.team == team):
                return True
        return False

    def teams_with(self, permission: Permission) -> set[str]:
        """Return the teams for which this principal has ``permission``."""
        return {
            grant.team
            for grant in self.grants
            if permission in ROLE_PERMISSIONS.get(grant.role, ())
        }

    @property
    def roles(self) -> list[str]:
        return [str(grant) for grant in self.grants]


def roles_with(permission: Permission) -> list[str]:
    """Return the roles that grant ``permission``."""
    return [role for role, granted in ROLE_PERMISSIONS.items() if permission in granted]

"""The prompt registry in the store: versions, reviews, labels and rollback.

Every write runs in one transaction that also adds its audit event and
raises the registry generation, which gateway replicas poll to drop cached
resolutions. Permission checks come first; a denied action changes nothing
and leaves a ``denied`` audit event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keelway.governance.audit import AuditLog
from keelway.governance.errors import Conflict, Invalid, NotFound
from keelway.governance.roles import Permission, Principal
from keelway.prompts.content import PromptContent, validate_prompt_name
from keelway.prompts.errors import InvalidPrompt, InvalidReference
from keelway.prompts.versioning import (
    RESERVED_LABELS,
    PromptReference,
    Version,
    choose_level,
    matches,
    next_version,
    propose_bump,
    validate_label,
)
from keelway.store.database import Database, as_utc
from keelway.store.models import (
    EvalGate,
    LabelMove,
    Prompt,
    PromptLabel,
    PromptVersion,
    RegistryState,
)

if TYPE_CHECKING:
    from keelway.config import PromptsConfig

PROPOSED = "proposed"
APPROVED = "approved"
REJECTED = "rejected"

LATEST = "latest"
MAX_TEAM_LENGTH = 200


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One stored version of a prompt."""

    id: str
    prompt: str
    team: str | None
    version: str
    content: PromptContent
    content_hash: str
    status: str
    author: str
    created_at: datetime
    message: str | None
    bump: str | None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    review_comment: str | None = None
    labels: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        return f"{self.prompt}@{self.version}"

    def as_dict(self, *, content: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "prompt": self.prompt,
            "version": self.version,
            "status": self.status,
            "content_hash": self.content_hash,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "message": self.message,
            "bump": self.bump,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": self.reviewed_at.isoformat() if self.reviewed_at else None,
            "review_comment": self.review_comment,
            "labels": list(self.labels),
        }
        if content:
            data["content"] = self.content.to_dict()
        return data


@dataclass(frozen=True, slots=True)
class PromptSummary:
    """A prompt with its labels and newest version."""

    name: str
    team: str | None
    created_at: datetime
    created_by: str
    latest: str | None
    labels: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "team": self.team,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "latest_version": self.latest,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True, slots=True)
class Resolved:
    """The version a reference points at, as the gateway serves it."""

    name: str
    team: str | None
    version: str
    content: PromptContent
    content_hash: str
    status: str
    label: str | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event in a prompt's history, from its versions and label moves."""

    at: datetime
    actor: str
    action: str
    version: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "version": self.version,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class PushResult:
    """The outcome of a push for one prompt.

    ``outcome`` is ``created``, ``new_version`` or ``unchanged``.
    """

    name: str
    outcome: str
    version: VersionRecord | None


def _version_key(row: PromptVersion) -> tuple[int, int, int]:
    return (row.major, row.minor, row.patch)


class PromptRegistry:
    """Domain verbs over the prompt tables, with role checks and audit events."""

    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        protected_labels: tuple[str, ...] = ("production",),
        gated_labels: tuple[str, ...] = (),
        gate_datasets: dict[str, str] | None = None,
    ) -> None:
        self.database = database
        self.audit = audit
        self.protected_labels = protected_labels
        self.gated_labels = gated_labels
        self.gate_datasets = gate_datasets or {}

    @classmethod
    def from_config(
        cls, database: Database, audit: AuditLog, prompts: PromptsConfig
    ) -> PromptRegistry:
        """Build the registry with the label rules of the ``prompts`` config."""
        return cls(
            database,
            audit,
            tuple(prompts.protected_labels),
            tuple(prompts.gated_labels),
            dict(prompts.gate_datasets),
        )

    # Reading

    def generation(self) -> int:
        """Return the registry generation, which every change raises."""
        with self.database.session() as session:
            value = session.scalar(
                select(RegistryState.generation).where(RegistryState.id == 1)
            )
            return int(value or 0)

    def prompts(self, viewer: Principal | None = None) -> list[PromptSummary]:
        """Return every prompt, or those ``viewer`` may read."""
        with self.database.session() as session:
            prompts = list(session.scalars(select(Prompt).order_by(Prompt.name)))
            return [
                self._summary(session, prompt)
                for prompt in prompts
                if viewer is None or can_read(viewer, prompt.team)
            ]

    def authorize_read(self, actor: Principal, name: str) -> None:
        """Raise Forbidden, recording it, unless ``actor`` may read prompt ``name``."""
        with self.database.session() as session:
            team = self._prompt(session, name).team
        if not can_read(actor, team):
            where = f"team {team!r}" if team else "any team"
            raise self.audit.deny(
                actor,
                "prompt.read",
                f"prompt:{name}",
                f"{actor.name} has no role that may read prompts of {where}",
                team=team,
            )

    def show(self, name: str) -> PromptSummary:
        with self.database.session() as session:
            return self._summary(session, self._prompt(session, name))

    def versions(self, name: str) -> list[VersionRecord]:
        """Return every version of a prompt, newest first."""
        with self.database.session() as session:
            prompt = self._prompt(session, name)
            rows = self._version_rows(session, prompt)
            labels = self._labels_by_version(session, prompt)
            return [self._record(prompt, row, labels) for row in rows]

    def version(self, name: str, version: str) -> VersionRecord:
        with self.database.session() as session:
            prompt = self._prompt(session, name)
            row = self._version_row(session, prompt, version)
            return self._record(prompt, row, self._labels_by_version(session, prompt))

    def resolve(self, reference: PromptReference) -> Resolved:
        """Return the version a reference points at; raise NotFound otherwise."""
        with self.database.session() as session:
            prompt = self._prompt(session, reference.name)
            label = reference.label
            if label == LATEST:
                row = self._newest_approved(session, prompt, None)
            elif label is not None:
                row = self._labelled(session, prompt, label)
            elif reference.version is not None and reference.version.count(".") == 2:
                row = self._version_row(session, prompt, reference.version)
            else:
                row = self._newest_approved(session, prompt, reference.version)
            return Resolved(
                prompt.name,
                prompt.team,
                row.version,
                PromptContent.from_dict(row.content),
                row.content_hash,
                row.status,
                label,
            )

    def history(self, name: str) -> list[HistoryEntry]:
        """Return proposals, reviews and label moves of a prompt, oldest first."""
        with self.database.session() as session:
            prompt = self._prompt(session, name)
            rows = self._version_rows(session, prompt)
            by_id = {row.id: row.version for row in rows}
            entries = []
            for row in rows:
                entries.append(
                    HistoryEntry(
                        as_utc(row.created_at),
                        row.author,
                        "propose",
                        row.version,
                        row.message or "",
                    )
                )
                if row.reviewed_at is not None and row.reviewed_by is not None:
                    entries.append(
                        HistoryEntry(
                            as_utc(row.reviewed_at),
                            row.reviewed_by,
                            "approve" if row.status == APPROVED else "reject",
                            row.version,
                            row.review_comment or "",
                        )
                    )
            moves = session.scalars(
                select(LabelMove)
                .where(LabelMove.prompt_id == prompt.id)
                .order_by(LabelMove.id)
            )
            for move in moves:
                before = by_id.get(move.from_version_id or "", "-")
                after = by_id.get(move.to_version_id or "", "-")
                entries.append(
                    HistoryEntry(
                        as_utc(move.at),
                        move.actor,
                        move.action,
                        after if move.to_version_id else None,
                        f"{move.label}: {before} -> {after}",
                    )
                )
            entries.sort(key=lambda entry: entry.at)
            return entries

    # Writing

    def create(
        self,
        actor: Principal,
        name: str,
        content: PromptContent,
        *,
        team: str | None = None,
        message: str | None = None,
    ) -> VersionRecord:
        """Create a prompt with its first version, 1.0.0, proposed for review."""
        _check_name(name)
        if team is not None and (not team.strip() or len(team) > MAX_TEAM_LENGTH):
            raise Invalid(
                f"team must be 1 to {MAX_TEAM_LENGTH} characters and not only "
                "whitespace"
            )
        self.audit.require(
            actor,
            Permission.WRITE_PROMPTS,
            "prompt.create",
            f"prompt:{name}",
            team=team,
        )
        now = datetime.now(UTC)
        prompt = Prompt(
            id=uuid.uuid4().hex,
            name=name,
            team=team,
            created_at=now,
            created_by=actor.name,
        )
        try:
            with self.database.session() as session, session.begin():
                session.add(prompt)
                session.flush()
                row = self._add_version(
                    session, prompt, actor, content, Version(1, 0, 0), None, message
                )
                self.audit.add(
                    session,
                    actor,
                    "prompt.create",
                    f"prompt:{name}@{row.version}",
                    team=team,
                    details={"content_hash": row.content_hash},
                )
                bump_generation(session)
        except IntegrityError:
            raise Conflict(f"a prompt named {name!r} already exists") from None
        return self._record(prompt, row, {})

    def propose(
        self,
        actor: Principal,
        name: str,
        content: PromptContent,
        *,
        message: str | None = None,
        bump: str | None = None,
    ) -> VersionRecord | None:
        """Add a proposed version; return None when it equals the newest one.

        keelway proposes the semantic-version bump from the change; ``bump``
        may raise it but not lower it.
        """
        with self.database.session() as session, session.begin():
            prompt = self._prompt(session, name)
            self.audit.require(
                actor,
                Permission.WRITE_PROMPTS,
                "prompt.propose",
                f"prompt:{name}",
                team=prompt.team,
            )
            newest = max(self._version_rows(session, prompt), key=_version_key)
            if newest.content_hash == content.content_hash():
                return None
            previous = PromptContent.from_dict(newest.content)
            proposed = propose_bump(previous, content)
            if proposed is None:
                return None
            try:
                level = choose_level(proposed, bump)
            except InvalidReference as error:
                raise Invalid(str(error)) from None
            number = next_version(Version.parse(newest.version), level)
            row = self._add_version(
                session, prompt, actor, content, number, level, message
            )
            self.audit.add(
                session,
                actor,
                "prompt.propose",
                f"prompt:{name}@{row.version}",
                team=prompt.team,
                details={
                    "bump": level,
                    "reasons": list(proposed.reasons),
                    "content_hash": row.content_hash,
                },
            )
            bump_generation(session)
            return self._record(prompt, row, {})

    def push(
        self,
        actor: Principal,
        prompts: Mapping[str, PromptContent],
        *,
        team: str | None = None,
        message: str | None = None,
    ) -> list[PushResult]:
        """Create or propose a version for each changed prompt; skip unchanged ones."""
        results = []
        known = {summary.name for summary in self.prompts()}
        for name in sorted(prompts):
            content = prompts[name]
            if name not in known:
                created = self.create(actor, name, content, team=team, message=message)
                results.append(PushResult(name, "created", created))
                continue
            record = self.propose(actor, name, content, message=message)
            outcome = "unchanged" if record is None else "new_version"
            results.append(PushResult(name, outcome, record))
        return results

    def pull(
        self, label: str | None = None, viewer: Principal | None = None
    ) -> dict[str, PromptContent]:
        """Return the newest version of every prompt, or the labelled one.

        With a label, prompts that lack it are left out, and with a viewer,
        prompts it may not read.
        """
        contents = {}
        with self.database.session() as session:
            for prompt in session.scalars(select(Prompt).order_by(Prompt.name)):
                if viewer is not None and not can_read(viewer, prompt.team):
                    continue
                if label is None:
                    rows = self._version_rows(session, prompt)
                    row = max(rows, key=_version_key)
                else:
                    labelled = session.get(PromptLabel, (prompt.id, label))
                    if labelled is None:
                        continue
                    row = self._version_by_id(session, labelled.version_id)
                contents[prompt.name] = PromptContent.from_dict(row.content)
        return contents

    def review(
        self,
        actor: Principal,
        name: str,
        version: str,
        *,
        approve: bool,
        comment: str | None = None,
    ) -> VersionRecord:
        """Approve or reject a proposed version; its author may not review it."""
        action = "prompt.approve" if approve else "prompt.reject"
        target = f"prompt:{name}@{version}"
        with self.database.session() as session:
            prompt = self._prompt(session, name)
            row = self._version_row(session, prompt, version)
            author, status, team = row.author, row.status, prompt.team
        self.audit.require(actor, Permission.REVIEW_PROMPTS, action, target, team=team)
        if author == actor.name:
            raise self.audit.deny(
                actor,
                action,
                target,
                f"{actor.name} wrote {name}@{version} and cannot review it; "
                "another approver must",
                team=team,
            )
        if status != PROPOSED:
            raise Conflict(f"{name}@{version} is already {status}")
        with self.database.session() as session, session.begin():
            prompt = self._prompt(session, name)
            row = self._version_row(session, prompt, version)
            if row.status != PROPOSED:
                raise Conflict(f"{name}@{version} is already {row.status}")
            row.status = APPROVED if approve else REJECTED
            row.reviewed_by = actor.name
            row.reviewed_at = datetime.now(UTC)
            row.review_comment = comment
            self.audit.add(
                session,
                actor,
                action,
                target,
                team=prompt.team,
                details={"comment": comment} if comment else None,
            )
            bump_generation(session)
            labels = self._labels_by_version(session, prompt)
            return self._record(prompt, row, labels)

    def set_label(
        self, actor: Principal, name: str, label: str, version: str
    ) -> tuple[str | None, str]:
        """Point a label at a version; return the previous and the new version.

        A protected label takes approved versions only, and no label takes a
        rejected one. A gated label takes a version only when its newest eval
        gate against the label's current version passed; the move records
        that gate.
        """
        _check_label(label)
        target = f"prompt:{name}#{label}"
        with self.database.session() as session:
            prompt = self._prompt(session, name)
            row = self._version_row(session, prompt, version)
            team, status = prompt.team, row.status
            current = session.get(PromptLabel, (prompt.id, label))
            current_version = (
                self._version_by_id(session, current.version_id).version
                if current is not None
                else None
            )
            dataset = self.gate_datasets.get(label)
            gate = (
                self._gate(session, name, row.version, current_version, dataset)
                if label in self.gated_labels and current_version != row.version
                else None
            )
        self.audit.require(
            actor, Permission.MOVE_LABELS, "prompt.label", target, team=team
        )
        if label in self.protected_labels and status != APPROVED:
            raise self.audit.deny(
                actor,
                "prompt.label",
                target,
                f"label {label!r} is protected and takes approved versions only; "
                f"{name}@{version} is {status}",
                team=team,
                details={"version": version},
            )
        if status == REJECTED:
            raise self.audit.deny(
                actor,
                "prompt.label",
                target,
                f"{name}@{version} was rejected in review and cannot take a label",
                team=team,
                details={"version": version},
            )
        needs_gate = label in self.gated_labels and current_version != row.version
        if needs_gate and (gate is None or not gate.passed):
            raise self.audit.deny(
                actor,
                "prompt.label",
                target,
                _gate_refusal(name, label, row.version, current_version, gate, dataset),
                team=team,
                details={
                    "version": row.version,
                    "eval_gate": gate.id if gate is not None else None,
                },
            )
        details: dict[str, Any] = {"from": current_version, "to": row.version}
        if gate is not None:
            details["eval_gate"] = gate.id
            details["eval_run"] = gate.candidate_run_id
        with self.database.session() as session, session.begin():
            prompt = self._prompt(session, name)
            row = self._version_row(session, prompt, version)
            previous = self._move(
                session,
                prompt,
                label,
                row,
                actor,
                "set",
                gate.id if gate is not None else None,
            )
            details["from"] = previous
            self.audit.add(
                session,
                actor,
                "prompt.label",
                target,
                team=prompt.team,
                details=details,
            )
            bump_generation(session)
            return previous, row.version

    def remove_label(self, actor: Principal, name: str, label: str) -> str:
        """Remove a label; return the version it pointed at."""
        _check_label(label)
        target = f"prompt:{name}#{label}"
        with self.database.session() as session:
            team = self._prompt(session, name).team
        self.audit.require(
            actor, Permission.MOVE_LABELS, "prompt.unlabel", target, team=team
        )
        with self.database.session() as session, session.begin():
            prompt = self._prompt(session, name)
            current = session.get(PromptLabel, (prompt.id, label))
            if current is None:
                raise NotFound(f"prompt {name!r} has no label {label!r}")
            version = self._version_by_id(session, current.version_id).version
            session.delete(current)
            session.add(
                LabelMove(
                    prompt_id=prompt.id,
                    label=label,
                    from_version_id=current.version_id,
                    to_version_id=None,
                    action="remove",
                    actor=actor.name,
                    at=datetime.now(UTC),
                )
            )
            self.audit.add(
                session,
                actor,
                "prompt.unlabel",
                target,
                team=prompt.team,
                details={"from": version},
            )
            bump_generation(session)
            return version

    def rollback(self, actor: Principal, name: str, label: str) -> tuple[str, str]:
        """Move a label back to the version it pointed at before; return both.

        Earlier rollbacks count as undone moves, so two rollbacks in a row go
        back two versions rather than forth and back. Versions that could not
        take the label now (rejected ones, or unapproved ones for a protected
        label) are skipped.
        """
        _check_label(label)
        target = f"prompt:{name}#{label}"
        with self.database.session() as session:
            team = self._prompt(session, name).team
        self.audit.require(
            actor, Permission.MOVE_LABELS, "prompt.rollback", target, team=team
        )
        with self.database.session() as session, session.begin():
            prompt = self._prompt(session, name)
            current = session.get(PromptLabel, (prompt.id, label))
            if current is None:
                raise NotFound(f"prompt {name!r} has no label {label!r}")
            row = self._rollback_target(session, prompt, label, current.version_id)
            previous = self._move(session, prompt, label, row, actor, "rollback")
            assert previous is not None
            self.audit.add(
                session,
                actor,
                "prompt.rollback",
                target,
                team=prompt.team,
                details={"from": previous, "to": row.version},
            )
            bump_generation(session)
            return previous, row.version

    # Internals

    def _rollback_target(
        self, session: Session, prompt: Prompt, label: str, current: str
    ) -> PromptVersion:
        moves = session.scalars(
            select(LabelMove)
            .where(LabelMove.prompt_id == prompt.id, LabelMove.label == label)
            .order_by(LabelMove.id)
        )
        stack: list[str | None] = []
        for move in moves:
            if move.action == "rollback":
                while stack and stack[-1] != move.to_version_id:
                    stack.pop()
                if not stack:
                    stack.append(move.to_version_id)
            else:
                stack.append(move.to_version_id)
        for version_id in reversed(stack[:-1]):
            if version_id is None or version_id == current:
                continue
            row = self._version_by_id(session, version_id)
            if row.status == REJECTED:
                continue
            if label in self.protected_labels and row.status != APPROVED:
                continue
            return row
        raise Conflict(
            f"label {label!r} of prompt {prompt.name!r} has no earlier version "
            "to roll back to"
        )

    def _move(
        self,
        session: Session,
        prompt: Prompt,
        label: str,
        row: PromptVersion,
        actor: Principal,
        action: str,
        eval_gate_id: str | None = None,
    ) -> str | None:
        now = datetime.now(UTC)
        current = session.get(PromptLabel, (prompt.id, label))
        previous_id = current.version_id if current is not None else None
        previous = (
            self._version_by_id(session, previous_id).version if previous_id else None
        )
        if current is None:
            session.add(
                PromptLabel(
                    prompt_id=prompt.id,
                    label=label,
                    version_id=row.id,
                    moved_at=now,
                    moved_by=actor.name,
                )
            )
        else:
            current.version_id = row.id
            current.moved_at = now
            current.moved_by = actor.name
        session.add(
            LabelMove(
                prompt_id=prompt.id,
                label=label,
                from_version_id=previous_id,
                to_version_id=row.id,
                action=action,
                actor=actor.name,
                at=now,
                eval_gate_id=eval_gate_id,
            )
        )
        return previous

    @staticmethod
    def _gate(
        session: Session,
        name: str,
        version: str,
        baseline: str | None,
        dataset: str | None,
    ) -> EvalGate | None:
        """Return the newest gate of ``version`` against ``baseline``.

        With no baseline (the label points nowhere yet) any gate of the
        version counts. With a dataset, only gates run on it count.
        """
        query = select(EvalGate).where(
            EvalGate.prompt == name, EvalGate.candidate_version == version
        )
        if baseline is not None:
            query = query.where(EvalGate.baseline_version == baseline)
        if dataset is not None:
            query = query.where(EvalGate.dataset == dataset)
        return session.scalar(query.order_by(EvalGate.created_at.desc()).limit(1))

    def _add_version(
        self,
        session: Session,
        prompt: Prompt,
        actor: Principal,
        content: PromptContent,
        number: Version,
        bump: str | None,
        message: str | None,
    ) -> PromptVersion:
        row = PromptVersion(
            id=uuid.uuid4().hex,
            prompt_id=prompt.id,
            version=str(number),
            major=number.major,
            minor=number.minor,
            patch=number.patch,
            content=content.to_dict(),
            content_hash=content.content_hash(),
            bump=bump,
            status=PROPOSED,
            author=actor.name,
            created_at=datetime.now(UTC),
            message=message,
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(
                f"version {number} of prompt {prompt.name!r} was created at the "
                "same time by someone else; propose again"
            ) from None
        return row

    @staticmethod
    def _prompt(session: Session, name: str) -> Prompt:
        prompt = session.scalar(select(Prompt).where(Prompt.name == name))
        if prompt is None:
            raise NotFound(f"prompt {name!r} not found")
        return prompt

    @staticmethod
    def _version_rows(session: Session, prompt: Prompt) -> list[PromptVersion]:
        rows = session.scalars(
            select(PromptVersion).where(PromptVersion.prompt_id == prompt.id)
        )
        return sorted(rows, key=_version_key, reverse=True)

    @staticmethod
    def _version_by_id(session: Session, version_id: str) -> PromptVersion:
        row = session.get(PromptVersion, version_id)
        if row is None:
            raise NotFound(f"prompt version {version_id!r} not found")
        return row

    @staticmethod
    def _version_row(session: Session, prompt: Prompt, version: str) -> PromptVersion:
        try:
            number = str(Version.parse(version.removeprefix("v")))
        except InvalidReference as error:
            raise Invalid(str(error)) from None
        row = session.scalar(
            select(PromptVersion).where(
                PromptVersion.prompt_id == prompt.id, PromptVersion.version == number
            )
        )
        if row is None:
            raise NotFound(f"prompt {prompt.name!r} has no version {number}")
        return row

    def _labelled(self, session: Session, prompt: Prompt, label: str) -> PromptVersion:
        current = session.get(PromptLabel, (prompt.id, label))
        if current is None:
            raise NotFound(f"prompt {prompt.name!r} has no label {label!r}")
        return self._version_by_id(session, current.version_id)

    def _newest_approved(
        self, session: Session, prompt: Prompt, prefix: str | None
    ) -> PromptVersion:
        for row in self._version_rows(session, prompt):
            if row.status != APPROVED:
                continue
            if prefix is None or matches(Version.parse(row.version), prefix):
                return row
        within = f" matching {prefix}" if prefix else ""
        raise NotFound(f"prompt {prompt.name!r} has no approved version{within}")

    @staticmethod
    def _labels_by_version(session: Session, prompt: Prompt) -> dict[str, list[str]]:
        labels: dict[str, list[str]] = {}
        rows = session.scalars(
            select(PromptLabel)
            .where(PromptLabel.prompt_id == prompt.id)
            .order_by(PromptLabel.label)
        )
        for row in rows:
            labels.setdefault(row.version_id, []).append(row.label)
        return labels

    def _record(
        self, prompt: Prompt, row: PromptVersion, labels: Mapping[str, list[str]]
    ) -> VersionRecord:
        return VersionRecord(
            id=row.id,
            prompt=prompt.name,
            team=prompt.team,
            version=row.version,
            content=PromptContent.from_dict(row.content),
            content_hash=row.content_hash,
            status=row.status,
            author=row.author,
            created_at=as_utc(row.created_at),
            message=row.message,
            bump=row.bump,
            reviewed_by=row.reviewed_by,
            reviewed_at=as_utc(row.reviewed_at),
            review_comment=row.review_comment,
            labels=tuple(labels.get(row.id, ())),
        )

    def _summary(self, session: Session, prompt: Prompt) -> PromptSummary:
        rows = self._version_rows(session, prompt)
        by_id = {row.id: row.version for row in rows}
        labels = {
            row.label: by_id.get(row.version_id, "?")
            for row in session.scalars(
                select(PromptLabel)
                .where(PromptLabel.prompt_id == prompt.id)
                .order_by(PromptLabel.label)
            )
        }
        return PromptSummary(
            prompt.name,
            prompt.team,
            as_utc(prompt.created_at),
            prompt.created_by,
            rows[0].version if rows else None,
            labels,
        )


def can_read(actor: Principal, team: str | None) -> bool:
    """Return whether ``actor`` may read a prompt of ``team``.

    A prompt without a team is readable with any role that reads prompts.
    """
    if team is None:
        return bool(actor.teams_with(Permission.READ_PROMPTS))
    return actor.can(Permission.READ_PROMPTS, team)


def bump_generation(session: Session) -> None:
    """Raise the registry generation in ``session``'s transaction."""
    session.execute(
        update(RegistryState)
        .where(RegistryState.id == 1)
        .values(generation=RegistryState.generation + 1)
    )


def _gate_refusal(
    name: str,
    label: str,
    version: str,
    current: str | None,
    gate: EvalGate | None,
    dataset: str | None,
) -> str:
    against = f" against {name}@{current}" if current else ""
    baseline = f" --baseline {name}@{current}" if current else ""
    on = f" on dataset {dataset!r}" if dataset else ""
    if gate is None:
        return (
            f"label {label!r} is gated: {name}@{version} needs a passing eval gate"
            f"{against}{on} first; run 'keelway eval gate --candidate "
            f"{name}@{version}{baseline} --dataset {dataset or 'DATASET'}'"
        )
    reasons = "; ".join(gate.reasons) or "it failed"
    return (
        f"label {label!r} is gated and the newest eval gate of {name}@{version}"
        f"{against} failed: {reasons}"
    )


def _check_label(label: str) -> None:
    try:
        validate_label(label)
    except InvalidReference as error:
        raise Invalid(str(error)) from None


def _check_name(name: str) -> None:
    try:
        validate_prompt_name(name)
    except InvalidReference as error:
        raise Invalid(str(error)) from None


__all__ = [
    "APPROVED",
    "PROPOSED",
    "REJECTED",
    "RESERVED_LABELS",
    "HistoryEntry",
    "InvalidPrompt",
    "PromptRegistry",
    "PromptSummary",
    "PushResult",
    "Resolved",
    "VersionRecord",
]

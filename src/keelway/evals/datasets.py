"""Versioned datasets in the store.

Every change to a dataset's cases or default evaluators makes a new version
(1, 2, ...); saving the same content again makes none. Versions are never
edited, so a run that records the version it used can be repeated exactly.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keelway.evals.base import Case
from keelway.evals.cases import CaseError, normalize_cases, to_case
from keelway.governance.audit import AuditLog
from keelway.governance.errors import Conflict, Invalid, NotFound
from keelway.governance.roles import Permission, Principal
from keelway.store.database import Database, as_utc
from keelway.store.models import Dataset, DatasetCase, DatasetVersion

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The largest value of the store's 32-bit version column.
MAX_VERSION = 2**31 - 1
MAX_TEAM_LENGTH = 200


def check_name(name: str) -> None:
    """Raise Invalid unless ``name`` is a valid dataset name."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise Invalid(
            f"invalid dataset name {shown}: use 1 to 128 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit"
        )


def _check_settings(
    team: str | None, description: str | None, message: str | None
) -> None:
    if team is not None and (not team.strip() or len(team) > MAX_TEAM_LENGTH):
        raise Invalid(
            f"team must be 1 to {MAX_TEAM_LENGTH} characters and not only whitespace"
        )
    for label, value in (
        ("team", team),
        ("description", description),
        ("message", message),
    ):
        if value is not None and "\x00" in value:
            raise Invalid(f"{label} must not contain NUL characters")


def parse_dataset_reference(text: str) -> tuple[str, int | None]:
    """Split ``NAME`` or ``NAME@VERSION`` into the name and version."""
    name, at, version = text.partition("@")
    check_name(name)
    if not at:
        return name, None
    # isdigit alone accepts digits such as '³' that int() rejects, and int()
    # rejects strings of more than 4300 digits.
    valid = version.isascii() and version.isdigit() and len(version) <= 10
    if not valid or not 1 <= int(version) <= MAX_VERSION:
        raise Invalid(
            f"invalid dataset version {version[:20]!r} of {name}: versions are "
            f"whole numbers from 1 to {MAX_VERSION}"
        )
    return name, int(version)


def content_hash(
    cases: Sequence[Mapping[str, Any]], evaluators: Sequence[Mapping[str, Any]] | None
) -> str:
    """Return the SHA-256 of a version's cases and evaluators, as hex."""
    body = {"cases": list(cases), "evaluators": list(evaluators or [])}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class DatasetVersionRecord:
    """One dataset version, without its cases."""

    name: str
    version: int
    team: str | None
    description: str | None
    case_count: int
    content_hash: str
    evaluators: list[dict[str, Any]] | None
    message: str | None
    created_at: datetime
    created_by: str

    @property
    def reference(self) -> str:
        """Return ``name@version``."""
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data."""
        return {
            "name": self.name,
            "version": self.version,
            "team": self.team,
            "description": self.description,
            "cases": self.case_count,
            "content_hash": self.content_hash,
            "evaluators": self.evaluators,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


@dataclass(frozen=True, slots=True)
class LoadedDataset:
    """A dataset version with its cases in stored form."""

    record: DatasetVersionRecord
    cases: list[dict[str, Any]]

    def eval_cases(self) -> list[Case]:
        """Return the cases as evaluator-facing :class:`Case` objects."""
        return [to_case(case) for case in self.cases]


def _record(dataset: Dataset, row: DatasetVersion) -> DatasetVersionRecord:
    return DatasetVersionRecord(
        name=dataset.name,
        version=row.version,
        team=dataset.team,
        description=dataset.description,
        case_count=row.case_count,
        content_hash=row.content_hash,
        evaluators=row.evaluators,
        message=row.message,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
    )


class DatasetStore:
    """Creates, versions and reads datasets, checking roles on the way."""

    def __init__(self, database: Database, audit: AuditLog) -> None:
        self.database = database
        self.audit = audit

    # Reading

    def names(self) -> list[DatasetVersionRecord]:
        """Return the newest version of every dataset, by name."""
        with self.database.session() as session:
            newest = (
                select(
                    DatasetVersion.dataset_id,
                    func.max(DatasetVersion.version).label("version"),
                )
                .group_by(DatasetVersion.dataset_id)
                .subquery()
            )
            rows = session.execute(
                select(Dataset, DatasetVersion)
                .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
                .join(
                    newest,
                    (newest.c.dataset_id == DatasetVersion.dataset_id)
                    & (newest.c.version == DatasetVersion.version),
                )
                .order_by(Dataset.name)
            ).all()
            return [_record(dataset, row) for dataset, row in rows]

    def versions(self, name: str) -> list[DatasetVersionRecord]:
        """Return every version of ``name``, oldest first."""
        check_name(name)
        with self.database.session() as session:
            dataset = self._dataset(session, name)
            rows = session.scalars(
                select(DatasetVersion)
                .where(DatasetVersion.dataset_id == dataset.id)
                .order_by(DatasetVersion.version)
            ).all()
            return [_record(dataset, row) for row in rows]

    def load(self, name: str, version: int | None = None) -> LoadedDataset:
        """Return a version of ``name`` with its cases; the newest by default."""
        check_name(name)
        with self.database.session() as session:
            dataset = self._dataset(session, name)
            row = self._version(session, dataset, version)
            cases = session.scalars(
                select(DatasetCase.data)
                .where(DatasetCase.version_id == row.id)
                .order_by(DatasetCase.position)
            ).all()
            return LoadedDataset(_record(dataset, row), list(cases))

    # Writing

    def save(
        self,
        actor: Principal,
        name: str,
        cases: Sequence[Mapping[str, Any]],
        *,
        evaluators: Sequence[Mapping[str, Any]] | None = None,
        description: str | None = None,
        team: str | None = None,
        message: str | None = None,
    ) -> tuple[DatasetVersionRecord, bool]:
        """Store ``cases`` as the newest version of ``name``, creating it if new.

        Returns the version and whether it is new: content equal to the
        newest version's makes no new version. ``evaluators`` None keeps the
        newest version's evaluators.
        """
        check_name(name)
        _check_settings(team, description, message)
        try:
            checked = normalize_cases(cases)
        except CaseError as error:
            raise Invalid(str(error)) from None
        with self.database.session() as session:
            stored_team = session.scalar(
                select(Dataset.team).where(Dataset.name == name)
            )
            exists = session.scalar(select(Dataset.id).where(Dataset.name == name))
        team = stored_team if exists is not None else team
        # Checked before the write transaction: a denial is written in a
        # transaction of its own.
        self.audit.require(
            actor,
            Permission.WRITE_DATASETS,
            "dataset.save",
            f"dataset:{name}",
            team=team,
        )
        with self.database.session() as session, session.begin():
            dataset = session.scalar(select(Dataset).where(Dataset.name == name))
            if dataset is None:
                dataset = Dataset(
                    id=uuid.uuid4().hex,
                    name=name,
                    team=team,
                    description=description,
                    created_at=datetime.now(UTC),
                    created_by=actor.name,
                )
                session.add(dataset)
                session.flush()
                newest = None
            else:
                newest = self._newest(session, dataset)
                if description is not None:
                    dataset.description = description
            if evaluators is None and newest is not None:
                evaluators = newest.evaluators
            specs = [dict(item) for item in evaluators] if evaluators else None
            digest = content_hash(checked, specs)
            if newest is not None and newest.content_hash == digest:
                return _record(dataset, newest), False
            row = DatasetVersion(
                id=uuid.uuid4().hex,
                dataset_id=dataset.id,
                version=(newest.version if newest is not None else 0) + 1,
                content_hash=digest,
                case_count=len(checked),
                evaluators=specs,
                message=message,
                created_at=datetime.now(UTC),
                created_by=actor.name,
            )
            session.add(row)
            session.flush()
            session.add_all(
                DatasetCase(
                    id=uuid.uuid4().hex,
                    version_id=row.id,
                    position=position,
                    key=case["id"],
                    data=case,
                )
                for position, case in enumerate(checked)
            )
            self.audit.add(
                session,
                actor,
                "dataset.save",
                f"dataset:{name}@{row.version}",
                team=team,
                details={"cases": len(checked), "content_hash": digest},
            )
            try:
                session.flush()
            except IntegrityError:
                raise Conflict(
                    f"dataset {name!r} changed while saving; try again"
                ) from None
            return _record(dataset, row), True

    def append(
        self,
        actor: Principal,
        name: str,
        cases: Sequence[Mapping[str, Any]],
        *,
        message: str | None = None,
        team: str | None = None,
    ) -> tuple[DatasetVersionRecord, bool]:
        """Add ``cases`` after the newest version's cases, as a new version.

        A case whose id the dataset already has is an error, so nothing is
        replaced by accident. A dataset that does not exist yet is created.
        """
        try:
            existing = self.load(name).cases
        except NotFound:
            existing = []
        return self.save(actor, name, [*existing, *cases], message=message, team=team)

    # Helpers

    @staticmethod
    def _dataset(session: Session, name: str) -> Dataset:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        if dataset is None:
            raise NotFound(f"no dataset named {name!r}")
        return dataset

    @staticmethod
    def _newest(session: Session, dataset: Dataset) -> DatasetVersion | None:
        return session.scalar(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.version.desc())
            .limit(1)
        )

    def _version(
        self, session: Session, dataset: Dataset, version: int | None
    ) -> DatasetVersion:
        if version is None:
            row = self._newest(session, dataset)
        else:
            row = session.scalar(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset.id,
                    DatasetVersion.version == version,
                )
            )
        if row is None:
            which = "any version" if version is None else f"version {version}"
            raise NotFound(f"dataset {dataset.name!r} has no {which}")
        return row

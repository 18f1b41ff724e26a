"""Virtual API keys: created once, stored as SHA-256 hashes, revoked by name.

Keys are 256-bit random tokens, so a single fast hash is enough to make the
stored value useless to a reader of the database; a slow password hash would
only add latency to every request.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from keelway.store.database import Database
from keelway.store.models import ApiKey

KEY_PREFIX = "kw-"


class KeyStoreError(Exception):
    """Base class of key store errors."""


class KeyNameTaken(KeyStoreError):
    """A key with this name already exists."""


class KeyNotFound(KeyStoreError):
    """No key has this name or id."""


def generate_key() -> str:
    """Return a new random secret key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """Return the hex SHA-256 under which a key is stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored key as the rest of keelway sees it: never the secret."""

    id: str
    name: str
    prefix: str
    team: str | None
    models: tuple[str, ...] | None
    payloads: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, model: str) -> bool:
        """Return whether this key may call ``model``."""
        return self.models is None or model in self.models


def _record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.key_prefix,
        team=row.team,
        models=tuple(row.models) if row.models is not None else None,
        payloads=row.payloads,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class KeyStore:
    """Domain verbs over the api_keys table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def create(
        self,
        name: str,
        *,
        team: str | None = None,
        models: list[str] | None = None,
        payloads: str | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """Create a key; return its record and the secret, which is not kept."""
        secret = generate_key()
        row = ApiKey(
            id=uuid.uuid4().hex,
            name=name,
            key_hash=hash_key(secret),
            key_prefix=secret[:10],
            team=team,
            models=models,
            payloads=payloads,
            created_at=datetime.now(UTC),
        )
        try:
            with self.database.session() as session, session.begin():
                session.add(row)
        except IntegrityError:
            raise KeyNameTaken(f"a key named {name!r} already exists") from None
        return _record(row), secret

    def list(self) -> list[ApiKeyRecord]:
        """Return every key, newest first, revoked ones included."""
        with self.database.session() as session:
            rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc()))
            return [_record(row) for row in rows]

    def revoke(self, name_or_id: str) -> ApiKeyRecord:
        """Revoke the key with this name or id; revoking twice is harmless."""
        with self.database.session() as session, session.begin():
            row = session.scalar(
                select(ApiKey).where(
                    (ApiKey.name == name_or_id) | (ApiKey.id == name_or_id)
                )
            )
            if row is None:
                raise KeyNotFound(f"no key named {name_or_id!r}")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            return _record(row)

    def find(self, secret: str) -> ApiKeyRecord | None:
        """Return the key whose secret this is, revoked or not, or None."""
        return self.find_by_hash(hash_key(secret))

    def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """Return the key stored under this SHA-256 hex digest, or None."""
        with self.database.session() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
            return _record(row) if row is not None else None

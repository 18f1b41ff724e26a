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
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from keelway.store.database import Database
from keelway.store.models import ApiKey

KEY_PREFIX = "kw-"
MAX_NAME_LENGTH = 200
BUDGET_PERIODS = ("day", "month", "total")
# Budgets are stored with nine decimal places (nano-USD) and must stay below
# 2**53 nano-USD, the largest integer the Redis budget scripts compare exactly.
MAX_BUDGET_USD = Decimal(9_000_000)


class KeyStoreError(Exception):
    """Base class of key store errors."""


class KeyNameTaken(KeyStoreError):
    """A key with this name already exists."""


class KeyNotFound(KeyStoreError):
    """No key has this name or id."""


class KeyAlreadyRevoked(KeyStoreError):
    """The key was revoked before; ``record`` is the key as stored."""

    def __init__(self, message: str, record: ApiKeyRecord) -> None:
        super().__init__(message)
        self.record = record


class InvalidKey(KeyStoreError):
    """A key's name or limits are invalid; the message names the value."""


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
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: Decimal | None = None
    budget_soft_usd: Decimal | None = None
    budget_period: str | None = None

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
        rpm=row.rpm,
        tpm=row.tpm,
        budget_usd=row.budget_usd,
        budget_soft_usd=row.budget_soft_usd,
        budget_period=row.budget_period,
    )


def validate_name(name: str) -> None:
    """Raise InvalidKey unless ``name`` is a usable key name."""
    if not name.strip():
        raise InvalidKey("key name must not be empty or only whitespace")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidKey(
            f"key name is {len(name)} characters long; the maximum is {MAX_NAME_LENGTH}"
        )


# The rpm and tpm columns are 32-bit integers on PostgreSQL.
MAX_PER_MINUTE = 2**31 - 1


def validate_limits(
    rpm: int | None,
    tpm: int | None,
    budget_usd: Decimal | None,
    budget_soft_usd: Decimal | None,
    budget_period: str | None,
) -> None:
    """Raise InvalidKey unless the limits are positive and consistent."""
    for label, count in (("rpm", rpm), ("tpm", tpm)):
        if count is not None and not 1 <= count <= MAX_PER_MINUTE:
            raise InvalidKey(
                f"{label} must be an integer from 1 to {MAX_PER_MINUTE}, got {count}"
            )
    for label, amount in (("budget", budget_usd), ("soft budget", budget_soft_usd)):
        if amount is None:
            continue
        if not amount.is_finite() or amount <= 0:
            raise InvalidKey(f"{label} must be a positive USD amount, got {amount}")
        if amount > MAX_BUDGET_USD:
            raise InvalidKey(
                f"{label} of {amount} USD exceeds the maximum of {MAX_BUDGET_USD} USD"
            )
        if amount != amount.quantize(Decimal("1e-9")):
            raise InvalidKey(f"{label} {amount} USD has more than 9 decimal places")
    hard, soft = budget_usd, budget_soft_usd
    if hard is not None and soft is not None and soft > hard:
        raise InvalidKey(
            f"soft budget {soft} USD exceeds the budget {hard} USD; "
            "the soft limit must not be above the hard one"
        )
    if budget_period is not None:
        if budget_period not in BUDGET_PERIODS:
            raise InvalidKey(
                f"budget period must be one of {', '.join(BUDGET_PERIODS)}, "
                f"got {budget_period!r}"
            )
        if budget_usd is None and budget_soft_usd is None:
            raise InvalidKey(
                f"budget period {budget_period!r} needs a budget or a soft budget"
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
        rpm: int | None = None,
        tpm: int | None = None,
        budget_usd: Decimal | None = None,
        budget_soft_usd: Decimal | None = None,
        budget_period: str | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """Create a key; return its record and the secret, which is not kept.

        A budget without a period is a monthly budget. Raises InvalidKey for
        an empty name or invalid limits, KeyNameTaken for a name in use.
        """
        validate_name(name)
        validate_limits(rpm, tpm, budget_usd, budget_soft_usd, budget_period)
        if budget_period is None and (
            budget_usd is not None or budget_soft_usd is not None
        ):
            budget_period = "month"
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
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget_usd,
            budget_soft_usd=budget_soft_usd,
            budget_period=budget_period,
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
        """Revoke the key with this name or id and return it.

        Raises KeyNotFound for an unknown key and KeyAlreadyRevoked, changing
        nothing, for a key revoked before.
        """
        with self.database.session() as session, session.begin():
            row = session.scalar(
                select(ApiKey).where(
                    (ApiKey.name == name_or_id) | (ApiKey.id == name_or_id)
                )
            )
            if row is None:
                raise KeyNotFound(f"no key named {name_or_id!r}")
            if row.revoked_at is not None:
                record = _record(row)
                raise KeyAlreadyRevoked(
                    f"key {row.name!r} was already revoked on "
                    f"{row.revoked_at:%Y-%m-%d %H:%M} UTC",
                    record,
                )
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

"""Engine creation and schema migration for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """Return a stored time as an aware UTC datetime.

    SQLite returns naive datetimes for timezone-aware columns; the store
    writes them in UTC.
    """
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class StoreError(Exception):
    """The store cannot be opened, migrated or read."""


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only an OS
    # crash or power loss can drop the last transactions.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """Create an engine for ``url``, in WAL mode when it is SQLite."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise StoreError(f"invalid database URL: {error}") from None
    try:
        return _create_engine(parsed)
    except NoSuchModuleError:
        raise StoreError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "expected sqlite:///PATH or postgresql://USER@HOST/DATABASE"
        ) from None
    except ImportError as error:
        raise StoreError(
            f"the driver of database URL scheme {parsed.drivername!r} is not "
            f"installed (no module {error.name!r}); keelway supports sqlite:// "
            "and postgresql://"
        ) from None


def _create_engine(parsed: URL) -> Engine:
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _create_parent(Path(parsed.database))
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _enable_sqlite_wal)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _create_parent(database: Path) -> None:
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(
            f"cannot create the folder {database.parent} of the SQLite database: "
            f"{error.strerror or error}"
        ) from None


class Database:
    """The store's engine and session factory, migrated to the newest schema."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_store_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Apply every Alembic revision the database lacks."""
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except SQLAlchemyError as error:
            raise StoreError(
                f"cannot migrate the store: {error.__class__.__name__}: "
                f"{error.orig if hasattr(error, 'orig') else error}"
            ) from None

    def session(self) -> Session:
        """Open a session; use it as a context manager."""
        return self.sessions()

    def ping(self) -> None:
        """Run a trivial query, raising StoreError when the store is unreachable."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            raise StoreError(f"store unreachable: {error.__class__.__name__}") from None

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def open_database(url: str) -> Database:
    """Open the store at ``url`` and migrate it; the usual entry point."""
    database = Database(url)
    database.migrate()
    log.debug("store ready at %s", make_url(url).render_as_string(hide_password=True))
    return database

"""SQLAlchemy models, Alembic migrations and the store's domain verbs."""

from keelway.store.database import Database
from keelway.store.keys import ApiKeyRecord, KeyStore, generate_key, hash_key

__all__ = ["ApiKeyRecord", "Database", "KeyStore", "generate_key", "hash_key"]

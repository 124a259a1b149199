"""Persistence for accounts, rooms and history: MongoDB through pymongo's ``AsyncMongoClient``.

``mongo`` holds the typed repository (:class:`Store`); ``embedded`` launches the SQLite-backed
``nx-27017`` wire-protocol server when no ``MONGO_URL`` is configured.
"""

from signaling.store.embedded import EmbeddedMongo, StoreStartError
from signaling.store.mongo import DuplicateError, Store

__all__ = ["DuplicateError", "EmbeddedMongo", "Store", "StoreStartError"]

"""Pixglot's metadata database: one schema, versioned, migrated on open (by Alembic, with the
migrations in ground/migrations).

SQLite in PIXGLOT_HOME by default (WAL, so the UI reads while the indexer writes); any SQLAlchemy
URL instead (PostgreSQL included). All SQL goes through SQLAlchemy Core with bound parameters.

Tables:
- `collections`: one per indexed collection, tied to one model (name + weights fingerprint).
- `images`: one row per indexed file. Its `id` is also the vector id in the Parquet shards and in
  the FAISS index, so ids are never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL).
- `deleted_images`: a log of deleted image ids, for bringing a FAISS index up to date.
- `shards`: the Parquet vector shards a collection's rows were committed with, per model. A shard
  file on disk that has no row here was written by a run that died before its commit: an orphan.
- `index_failures`: files an indexing run could not read, with the reason.
- `eval_runs`: evaluation results (written by `data/`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import alembic.command
import alembic.config
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, make_url

from ground.errors import PixglotError
from ground.home import default_db_url
from ground.paths import from_stored, to_stored

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

SCHEMA_VERSION = 1

metadata = MetaData()


class FilePath(TypeDecorator):
    """A file's path as the operating system names it, stored as text even when it is not UTF-8.

    The column is plain TEXT (the schema is unchanged); `ground.paths` says how names that are not
    UTF-8 are escaped in it. Values bound in comparisons (`==`, `in_`, `startswith`) are escaped the
    same way, so queries take and return the paths Python's `os` functions use.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else to_stored(value)

    def process_result_value(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else from_stored(value)


# SQLite's INTEGER PRIMARY KEY is its 64-bit rowid; BIGINT there would not autoincrement.
_ROW_ID = BigInteger().with_variant(Integer, "sqlite")

meta = Table(
    "pixglot_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

collections = Table(
    "collections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    # Guards the collection's directory in PIXGLOT_HOME against a second database claiming it.
    Column("uid", String(32), nullable=False, unique=True),
    Column("model", Text, nullable=False),
    Column("model_fingerprint", String(64), nullable=False),
    Column("dim", Integer, nullable=False),
    # Bumped by every transaction that adds or deletes images: a search process compares it with
    # the generation its FAISS index reflects to know whether the index is current.
    Column("generation", BigInteger, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

images = Table(
    "images",
    metadata,
    Column("id", _ROW_ID, primary_key=True),
    Column("collection_id", ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("path", FilePath, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("taken_at", DateTime(timezone=False)),  # EXIF local time, as the camera wrote it
    Column("camera", String(255)),
    Column("gps_lat", Float),
    Column("gps_lon", Float),
    Column("indexed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("collection_id", "path"),
    Index("ix_images_collection_hash", "collection_id", "content_hash"),
    Index("ix_images_collection_taken", "collection_id", "taken_at"),
    sqlite_autoincrement=True,
)

shards = Table(
    "shards",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("collection_id", ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("model_fingerprint", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("first_id", BigInteger, nullable=False),
    Column("last_id", BigInteger, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("collection_id", "model_fingerprint", "name"),
)

# The deletion log: ids of deleted images, in order, so that an index built before the deletions
# can drop them without a rebuild. Entries an index has absorbed are trimmed at its next rebuild.
deleted_images = Table(
    "deleted_images",
    metadata,
    Column("seq", _ROW_ID, primary_key=True),
    Column("collection_id", ForeignKey("collections.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("image_id", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

index_failures = Table(
    "index_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("collection_id", ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("path", FilePath, nullable=False),
    Column("size", BigInteger),
    Column("mtime_ns", BigInteger),
    Column("reason", Text, nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("collection_id", "path"),
)

eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(255), nullable=False),
    Column("dataset", String(255), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("languages", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("code_revision", String(64)),
    Column("metrics", JSON, nullable=False),
    Column("report_dir", Text),
)


class SchemaError(PixglotError):
    pass


MIGRATIONS = Path(__file__).with_name("migrations")  # Alembic's scripts: see its __init__


def _revision(version: int) -> str:
    return f"{version:04d}"


def _enable_sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL still survives a process crash (kill -9); only power loss can drop
        # the last commits, and the indexer's reconciliation handles shards without rows.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def schema_version(conn: Connection) -> int:
    if not conn.dialect.has_table(conn, meta.name):
        return 0
    value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    return int(value) if value is not None else 0


def migrate(conn: Connection) -> int:
    """Bring the schema to SCHEMA_VERSION with Alembic, inside the caller's transaction.

    `pixglot_meta.schema_version` stays the version an older Pixglot checks before it touches the
    database; Alembic's own table says which migrations ran. A database made before Pixglot
    migrated with Alembic holds the first without the second, and is marked as at its version.
    """
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"database schema version {version} is newer than this Pixglot understands "
            f"({SCHEMA_VERSION}); upgrade Pixglot"
        )
    config = alembic.config.Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    if version and not conn.dialect.has_table(conn, "alembic_version"):
        alembic.command.stamp(config, _revision(version))
    alembic.command.upgrade(config, _revision(SCHEMA_VERSION))
    if version == 0:
        conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
    elif version < SCHEMA_VERSION:
        conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
    return SCHEMA_VERSION


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def connect(url: str | None = None) -> Engine:
    """An engine on `url` (default: SQLite in PIXGLOT_HOME) with the schema migrated to the current version.

    Engines are shared per URL within a process, so callers may call this freely.
    """
    url = url or default_db_url()
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _open(url)
            _engines[url] = engine
    return engine


def _open(url: str) -> Engine:
    try:
        engine = create_engine(url)
    except Exception as err:  # bad URLs and missing drivers raise many types
        raise PixglotError(f"cannot use database {safe_url(url)}: {err}") from err
    if engine.dialect.name == "sqlite":
        _enable_sqlite_pragmas(engine)
    try:
        with engine.begin() as conn:
            migrate(conn)
    except SchemaError:
        engine.dispose()
        raise
    except Exception as err:
        engine.dispose()
        raise PixglotError(f"cannot open database {safe_url(url)}: {err}") from err
    return engine


def dispose(url: str | None = None) -> None:
    """Close the pooled connections of one engine (or all of them); the next connect() reopens."""
    with _engines_lock:
        keys = [url or default_db_url()] if url is not None else list(_engines)
        for key in keys:
            engine = _engines.pop(key, None)
            if engine is not None:
                engine.dispose()


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as given
        return url

"""The metadata database on SQLite and on a real PostgreSQL server: schema, migrations, and the
indexer's storage round trip (rows, shards, failures, reuse, pruning, filters, rebuild).

PostgreSQL runs as a throwaway cluster started by this module (initdb + pg_ctl in a temporary
folder, listening on 127.0.0.1 on a free port); the PostgreSQL tests are skipped, with the reason,
only where that cannot start (no server binaries, or root without a `postgres` user)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import ODD_FAILURE, ODD_NAMES
from sqlalchemy import create_engine, inspect, select, text, update

import indexer
from ground import db
from ground.errors import PixglotError
from indexer import Filters, IndexOptions, index_paths
from indexer.samples import SampleExif, write_image, write_images
from indexer.scan import scan

FAST = IndexOptions(progress=False, workers=0, commit_every=8)


def _postgres_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    return next((Path(p) for p in versions if (Path(p) / "initdb").exists()), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster for this test session; yields its URL without a database name."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install -e .[dev])")
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install the postgresql package")
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: run the server as the postgres user.
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="pixglot-pg-", dir="/tmp"))
    if as_user:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", _free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, text=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "pixglot", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync")  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )
    except subprocess.CalledProcessError as err:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {err.stderr or err.stdout}")
    try:
        yield f"postgresql+psycopg2://pixglot@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's server."""
    admin = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    name = f"pixglot_test_{uuid.uuid4().hex[:12]}"  # generated here: safe to splice as an identifier
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{postgres_server}/{name}"
    try:
        yield url
    finally:
        db.dispose(url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, pixglot_home: Path) -> Iterator[str]:
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_database")
        return
    url = f"sqlite:///{pixglot_home / 'store.db'}"
    yield url
    db.dispose(url)


def test_schema_is_created_versioned_and_migrated_once(database_url: str) -> None:
    engine = db.connect(database_url)
    tables = set(inspect(engine).get_table_names())
    assert {
        "pixglot_meta",
        "collections",
        "images",
        "shards",
        "deleted_images",
        "index_failures",
        "eval_runs",
    } <= tables
    with engine.connect() as conn:
        assert db.schema_version(conn) == db.SCHEMA_VERSION
    db.dispose(database_url)
    with db.connect(database_url).begin() as conn:
        assert db.migrate(conn) == db.SCHEMA_VERSION
        versions = (
            conn.execute(select(db.meta.c.value).where(db.meta.c.key == "schema_version")).scalars().all()
        )
    assert versions == [str(db.SCHEMA_VERSION)]


def test_a_newer_schema_is_refused(database_url: str) -> None:
    with db.connect(database_url).begin() as conn:
        conn.execute(update(db.meta).where(db.meta.c.key == "schema_version").values(value="99"))
    db.dispose(database_url)
    with pytest.raises(db.SchemaError, match="version 99 is newer"):
        db.connect(database_url)


def test_the_migrations_make_exactly_the_tables_pixglot_defines(database_url: str) -> None:
    # The migrations state their own tables; a change to ground/db.py without its migration
    # (or the reverse) shows here as a difference.
    with db.connect(database_url).connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), db.metadata)
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert differences == []
    assert revision == f"{db.SCHEMA_VERSION:04d}"


def test_a_database_made_before_alembic_is_marked_at_its_version_and_kept(database_url: str) -> None:
    # What Pixglot did before it migrated with Alembic: the tables of db.py, and the version row.
    engine = create_engine(database_url)
    with engine.begin() as conn:
        db.metadata.create_all(conn)
        conn.execute(db.meta.insert().values(key="schema_version", value="1"))
        conn.execute(text("INSERT INTO eval_runs (model, dataset, protocol, languages, created_at, metrics) "
                          "VALUES ('m', 'd', 'all', '[]', '2026-01-01', '{}')"))  # fmt: skip
    engine.dispose()
    with db.connect(database_url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0001"
        assert conn.execute(text("SELECT model FROM eval_runs")).scalars().all() == ["m"]
        assert db.schema_version(conn) == db.SCHEMA_VERSION


def test_eval_runs_round_trip(database_url: str) -> None:
    run = {
        "model": "tiny",
        "dataset": "xm3600",
        "protocol": "t2i",
        "languages": ["en", "ru", "zh"],
        "created_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        "code_revision": "abc123",
        "metrics": {"recall@1": 0.25, "per_language": {"ru": 0.5}},
        "report_dir": None,
    }
    engine = db.connect(database_url)
    with engine.begin() as conn:
        conn.execute(db.eval_runs.insert().values(run))
    with engine.connect() as conn:
        row = conn.execute(select(db.eval_runs)).mappings().one()
    assert row["languages"] == run["languages"] and row["metrics"] == run["metrics"]


def test_indexer_storage_round_trip(database_url: str, tiny: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_images(folder, 10)
    shutil.copy(folder / "img00002.jpg", folder / "copy-of-2.jpg")
    write_image(
        folder / "cam" / "a.jpg", seed=50, exif=SampleExif(datetime(2021, 6, 1, 12), "Canon", "Canon R5")
    )
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    first = index_paths([folder], "store", tiny, database_url, FAST)
    assert (first.added, first.encoded, first.reused, first.failed) == (12, 11, 1, 1)
    # Rows take ids in the order the files were found, on every database.
    found = indexer.open_collection("store", database_url)
    ids = [found.image_by_path(e.path).id for e in scan([str(folder)]) if not e.path.endswith("broken.png")]
    assert len(set(ids)) == 12 and ids == sorted(ids)
    assert index_paths([folder], "store", None, database_url, FAST).unchanged == 12

    os.rename(folder / "img00005.png", folder / "moved.png")
    moved = index_paths(
        [folder], "store", None, database_url, IndexOptions(progress=False, workers=0, prune=True)
    )
    assert (moved.added, moved.reused, moved.encoded, moved.pruned) == (1, 1, 0, 1)

    collection = indexer.open_collection("store", database_url)
    assert collection.count() == 12
    assert [Path(f.path).name for f in collection.failures()] == ["broken.png"]
    hit = collection.search(image=folder / "moved.png", k=1)[0]
    assert hit.path == str(folder / "moved.png") and hit.score == pytest.approx(1.0, abs=1e-4)
    canon = collection.search("x", k=5, filters=Filters(camera="canon", date_from=datetime(2021, 1, 1)))
    assert [h.metadata["camera"] for h in canon] == ["Canon R5"]
    assert canon[0].metadata["taken_at"] == "2021-06-01T12:00:00"
    before = [(h.image_id, round(h.score, 5)) for h in collection.search("harbour", k=12)]
    indexer.rebuild("store", database_url)
    after = indexer.open_collection("store", database_url).search("harbour", k=12)
    assert [(h.image_id, round(h.score, 5)) for h in after] == before


def test_odd_file_names_go_through_bound_parameters(database_url: str, tiny: str, tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    names = ['it\'s "quoted"; DROP TABLE images; --.jpg', "100%_done.png", "naïve café 猫.jpg"]
    for seed, name in enumerate(names):
        write_image(folder / name, seed=seed)
    index_paths([folder], "odd", tiny, database_url, FAST)
    collection = indexer.open_collection("odd", database_url)
    assert all(collection.is_indexed(folder / name) for name in names)
    assert "images" in inspect(db.connect(database_url)).get_table_names()
    literal = collection.search("x", k=5, filters=Filters(path_prefix=str(folder / "100%_")))
    assert [Path(h.path).name for h in literal] == ["100%_done.png"]
    assert collection.search("x", k=5, filters=Filters(path_prefix=str(folder / "1%"))) == []


def test_names_that_are_not_utf8_are_indexed_searched_and_served(
    database_url: str, tiny: str, odd_folder: Path
) -> None:
    raw = os.fsencode(odd_folder)
    good = {os.fsdecode(raw + name) for name in ODD_NAMES}
    report = index_paths([odd_folder], "odd", tiny, database_url, FAST)
    assert (report.added, report.failed) == (4, 1)
    collection = indexer.open_collection("odd", database_url)
    hits = collection.search("x", k=10)
    assert {h.path for h in hits} == good
    assert all(collection.image_path(h.image_id) == Path(h.path) for h in hits)
    assert [f.path for f in collection.failures()] == [os.fsdecode(raw + ODD_FAILURE)]
    inside = collection.search("x", k=10, filters=Filters(path_prefix=os.fsdecode(raw + b"/\xff\xfe/")))
    assert [h.path for h in inside] == [os.fsdecode(raw + b"/\xff\xfe/inside.jpg")]
    # A rerun finds every stored row again: nothing is re-added or pruned.
    options = IndexOptions(progress=False, workers=0, prune=True)
    again = index_paths([odd_folder], "odd", None, database_url, options)
    assert (again.added, again.unchanged, again.pruned) == (0, 4, 0)


def test_image_ids_are_never_reused(database_url: str, tiny: str, tmp_path: Path) -> None:
    # Shards and the FAISS index key vectors by row id: a new image must never get a deleted id.
    folder = tmp_path / "ids"
    write_images(folder, 4)
    index_paths([folder], "ids", tiny, database_url, FAST)
    collection = indexer.open_collection("ids", database_url)
    newest = max(h.image_id for h in collection.search("x", k=4))
    newest_path = next(h.path for h in collection.search("x", k=4) if h.image_id == newest)
    os.unlink(newest_path)
    index_paths([folder], "ids", None, database_url, IndexOptions(progress=False, workers=0, prune=True))
    write_image(folder / "new.jpg", seed=99)
    index_paths([folder], "ids", None, database_url, FAST)
    assert collection.image_by_path(folder / "new.jpg").id > newest


def test_an_unreachable_database_is_one_clear_error() -> None:
    url = "postgresql+psycopg2://someone:secret@127.0.0.1:1/nowhere"
    with pytest.raises(PixglotError, match="cannot open database") as err:
        db.connect(url)
    assert "secret" not in str(err.value)

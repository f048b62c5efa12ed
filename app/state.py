"""What the page keeps between reruns: its settings, and per server process the open collections with
their model and FAISS index (`st.cache_resource`), shared by every browser session."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st

from ground.errors import PixglotError
from ground.home import default_db_url
from indexer.collection import LOCK_FILE, Collection, list_collections
from indexer.locking import try_exclusive
from indexer.searching import warm_up

log = logging.getLogger("pixglot.app")


@dataclass(frozen=True)
class Settings:
    db_url: str
    collection: str | None  # the collection to show first


def settings(argv: Sequence[str] | None = None) -> Settings:
    """From the script's arguments: `streamlit run app/main.py -- --collection NAME --db URL`."""
    parser = argparse.ArgumentParser(prog="pixglot ui", add_help=False, allow_abbrev=False)
    parser.add_argument("--collection")
    parser.add_argument("--db")
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return Settings(known.db or default_db_url(), known.collection)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    uid: str
    model: str
    count: int
    busy: bool  # an indexing run holds the collection's write lock

    def label(self) -> str:
        return f"{self.name} — {self.count:,} images · model {os.path.basename(self.model) or self.model}"


def being_written(collection: Collection) -> bool:
    """Whether another process (an indexing run) is writing the collection now."""
    if not (collection.folder / LOCK_FILE).exists():
        return False
    fd = try_exclusive(collection.folder / LOCK_FILE)
    if fd is None:
        return True
    os.close(fd)
    return False


def collection_infos(db_url: str) -> list[CollectionInfo]:
    return [
        CollectionInfo(c.name, c.uid, c.model, c.count(), being_written(c)) for c in list_collections(db_url)
    ]


@st.cache_resource(show_spinner=False, max_entries=16)
def open_collection(db_url: str, name: str, uid: str) -> Collection:
    """The collection, opened once per server process and shared by every browser session (its
    lock serialises them). `uid` is part of the key, so a collection that was deleted and created
    again under the same name is opened afresh."""
    return Collection.open(name, db_url)


@st.cache_resource(show_spinner=False, max_entries=16)
def warm(db_url: str, name: str, uid: str, fingerprint: str) -> str:
    """Load the collection's model, renderer code and FAISS index once per server process and model
    weights, when the page first shows the collection: its first query then answers like the next.
    Returns the fingerprint of the model it loaded."""
    collection = open_collection(db_url, name, uid)
    with collection.lock:
        return warm_up(collection).fingerprint


@contextmanager
def shown_errors(doing: str) -> Iterator[None]:
    """Expected errors as their one-line message; anything else logged with its traceback and shown
    as one line, so that no stack trace reaches the page."""
    try:
        yield
    except PixglotError as err:
        st.error(str(err))
    except Exception:
        log.exception("error while %s", doing)
        st.error(f"Something went wrong while {doing}. The details are in the server's log.")

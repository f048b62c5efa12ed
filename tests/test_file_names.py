"""File names that are not UTF-8, or hold newlines: stored losslessly, shown escaped, piped as bytes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import ODD_NAMES
from hypothesis import given
from hypothesis import strategies as st

from ground.errors import InputError
from ground.paths import from_stored, printable, to_stored
from indexer.scan import normalise_path
from pixglot.cli import main

# A name is any bytes but "/" and NUL; "." and ".." are not names.
names = st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))
names = names.filter(lambda b: b not in (b".", b".."))


def fs_path(parts: list[bytes], leading: bytes = b"/") -> str:
    return os.fsdecode(leading + b"/".join(parts))


@given(st.lists(names, min_size=1, max_size=5), st.sampled_from([b"/", b"//"]))
def test_stored_form_is_utf8_and_gives_back_the_same_path(parts: list[bytes], leading: bytes) -> None:
    path = fs_path(parts, leading)
    assert os.path.normpath(path) == path  # the form Pixglot stores: normalised and absolute
    stored = to_stored(path)
    stored.encode("utf-8")  # strict: a database can hold it
    assert from_stored(stored) == path
    if os.fsencode(path).decode("utf-8", "replace") == path:  # already UTF-8: stored unchanged
        assert stored == path


@given(st.lists(names, min_size=2, max_size=5), st.data())
def test_stored_form_keeps_folder_prefixes(parts: list[bytes], data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(parts) - 1))
    folder, child = fs_path(parts[:cut]), fs_path(parts)
    assert to_stored(child).startswith(to_stored(folder) + "/")
    other = fs_path([parts[0] + b"x", *parts[1:]])
    assert not to_stored(other).startswith(to_stored(fs_path(parts[:1])) + "/")


@given(st.lists(names, min_size=1, max_size=4))
def test_printable_form_shows_each_stray_byte_as_an_escape(parts: list[bytes]) -> None:
    path = fs_path(parts)
    shown = printable(path)
    assert shown == os.fsencode(path).decode("utf-8", "backslashreplace")
    shown.encode("utf-8")


def test_known_forms() -> None:
    path = os.fsdecode(b"/photos/caf\xe9/\xff.jpg")
    assert to_stored(path) == "/photos/caf//e9///ff.jpg"
    assert printable(path) == "/photos/caf\\xe9/\\xff.jpg"
    assert from_stored("//host/share//x.jpg") == "//host/share//x.jpg"  # no hex after //: a plain path
    with pytest.raises(InputError, match="surrogate"):
        to_stored("/a/\ud800.jpg")


def test_cli_prints_escaped_names_for_people_and_bytes_for_pipes(
    tiny: str, odd_folder: Path, capsysbinary: pytest.CaptureFixture
) -> None:
    raw = os.fsencode(normalise_path(odd_folder))
    expected = {raw + name for name in ODD_NAMES}
    assert main(["index", str(odd_folder), "-c", "odd", "-m", tiny, "-q", "--workers", "0"]) == 0
    capsysbinary.readouterr()

    assert main(["search", "x", "-c", "odd", "-0"]) == 0
    out = capsysbinary.readouterr().out
    assert out.endswith(b"\0") and set(out[:-1].split(b"\0")) == expected

    assert main(["search", "x", "-c", "odd", "-f"]) == 0
    assert raw + b"/caf\xe9.jpg\n" in capsysbinary.readouterr().out

    assert main(["search", "x", "-c", "odd", "--json"]) == 0
    shown = {hit["path"] for hit in json.loads(capsysbinary.readouterr().out)}
    assert shown == {p.decode("utf-8", "backslashreplace") for p in expected}
    assert os.fsdecode(raw) + "/caf\\xe9.jpg" in shown

    assert main(["search", "x", "-c", "odd"]) == 0
    assert b"caf\\xe9.jpg" in capsysbinary.readouterr().out

    assert main(["index", "--report", "-0", "-c", "odd"]) == 0
    assert capsysbinary.readouterr().out == raw + b"/bad\xe9.png\0"
    assert main(["index", "--report", "-c", "odd"]) == 0
    assert capsysbinary.readouterr().out.startswith(raw + b"/bad\\xe9.png\t")
    assert main(["index", "-0", "-c", "odd", str(odd_folder)]) == 2
    assert b"give it with --report" in capsysbinary.readouterr().err

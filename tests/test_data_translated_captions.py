"""COCO-35L and CC3M-35L on tiny files in the published format: download (from a loopback server),
parsing into caption shards, COCO images from a folder, CC3M images fetched from the web, and
training shards the trainer reads."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import re
import socket
import time
from itertools import groupby
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from http_support import FileServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from data import cc3m35l, coco35l, pair_shards, web_images
from data import translated_captions as tc
from ground.download import part_path
from ground.errors import FileFormatError, InputError
from pixglot.cli import main
from training.data import COLUMNS, read_index

LANGS = ("de", "ja", "ar")


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def record(id_field: str, value: object, language: str, english: str, translated: str) -> dict:
    return {
        id_field: value,
        "src_lang": "en",
        "trg_lang": language,
        "caption_tokenized": english,
        "translation_tokenized": translated,
        "backtranslation_tokenized": english,
    }


def coco_records(images: dict[int, list[str]], languages=LANGS) -> list[dict]:
    """Flattened as published: one line per (caption N of an image, target language)."""
    return [
        record("image_id", f"{cocoid}_{n}", lang, caption, f"{lang}: {caption}")
        for cocoid, captions in images.items()
        for n, caption in enumerate(captions, start=1)
        for lang in languages
    ]


def cc3m_records(numbers, languages=("de", "fr")) -> list[dict]:
    return [
        record("rec_num", number, lang, f"caption {number}", f"{lang} {number}")
        for number in numbers
        for lang in languages
    ]


def jsonl(records: list[dict], ensure_ascii: bool = False) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=ensure_ascii).encode() + b"\n" for r in records)


def write_captions(directory: Path, stem: str, body: bytes, suffix: str = ".bz2") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.jsonl{suffix}"
    compress = {".bz2": bz2.compress, ".gz": gzip.compress, "": bytes}[suffix]
    path.write_bytes(compress(body))
    return path


def picture(seed: int, kind: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8 + seed, 6), (seed * 40 % 256, 90, 200)).save(buffer, kind)
    return buffer.getvalue()


COCO_IMAGES = {9: ["a cat on a mat", "a grey cat"], 42: ["two dogs"], 77: ["a red bus"], 555: ["no image"]}


@pytest.fixture
def coco(tmp_path: Path) -> dict[str, Path]:
    """A COCO-35L train file, and a COCO folder holding three of its four images: one in train2014,
    one in val2014 (Karpathy's "restval"), one in train2017."""
    dataset = tmp_path / "coco35l"
    write_captions(dataset, "coco_mt_train", jsonl(coco_records(COCO_IMAGES)))
    images = tmp_path / "coco"
    files = {
        "9": images / "train2014" / "COCO_train2014_000000000009.jpg",
        "42": images / "val2014" / "COCO_val2014_000000000042.jpg",
        "77": images / "train2017" / "000000000077.jpg",
    }
    for seed, path in enumerate(files.values()):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(picture(seed))
    return {"dataset": dataset, "images": images, "out": tmp_path / "shards", **files}


def shard_rows(out: Path) -> list[dict]:
    return pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("*.parquet"))]).to_pylist()


# --- download ---------------------------------------------------------------------------------------


def test_the_published_addresses_and_file_names():
    assert tc.BASE_URL == "https://storage.googleapis.com/crossmodal-3600"
    assert [tc.COCO.file_name(s) for s in tc.SPLITS] == ["coco_mt_train.jsonl.bz2", "coco_mt_dev.jsonl.bz2"]
    assert [tc.CC3M.file_name(s) for s in tc.SPLITS] == ["cc3m_mt_train.jsonl.bz2", "cc3m_mt_dev.jsonl.bz2"]
    assert len(tc.TARGET_LANGUAGES) == 34 and len(tc.LANGUAGES) == 35 and "en" in tc.LANGUAGES


def test_download_fetches_both_splits_and_resumes_a_cut_transfer(server, tmp_path):
    train = bz2.compress(jsonl(coco_records({1: ["x"] * 40})))
    dev = bz2.compress(jsonl(coco_records({2: ["y"] * 40})))
    server.files = {"/coco_mt_train.jsonl.bz2": train, "/coco_mt_dev.jsonl.bz2": dev}
    target = tmp_path / "coco35l"
    target.mkdir()
    part_path(target / "coco_mt_dev.jsonl.bz2").write_bytes(dev[:50])  # left by an earlier, cut run
    server.cut_after = 100  # and this run's first transfer is cut too
    result = tc.download("coco35l", target, splits=("dev", "train"), base_url=server.url, progress=False)
    assert (target / "coco_mt_dev.jsonl.bz2").read_bytes() == dev
    assert (target / "coco_mt_train.jsonl.bz2").read_bytes() == train
    assert server.requests == [
        ("/coco_mt_dev.jsonl.bz2", "bytes=50-"),
        ("/coco_mt_dev.jsonl.bz2", "bytes=150-"),
        ("/coco_mt_train.jsonl.bz2", None),
    ]
    assert result.fetched == ["coco_mt_dev.jsonl.bz2", "coco_mt_train.jsonl.bz2"]
    again = tc.download("coco35l", target, base_url=server.url, progress=False)
    assert again.fetched == [] and len(server.requests) == 3


def test_download_command_goes_to_the_datasets_folder(server, pixglot_home, capsys, monkeypatch):
    server.files["/cc3m_mt_dev.jsonl.bz2"] = bz2.compress(jsonl(cc3m_records([1])))
    monkeypatch.setenv(tc.BASE_URL_VARIABLE, server.url)
    assert main(["data", "cc3m35l", "download", "--split", "dev"]) == 0
    assert (pixglot_home / "datasets" / "cc3m35l" / "cc3m_mt_dev.jsonl.bz2").is_file()
    assert "downloaded cc3m_mt_dev.jsonl.bz2" in capsys.readouterr().out


# --- parsing ----------------------------------------------------------------------------------------


def test_parse_writes_key_text_language_source_with_english_taken_once(coco):
    summary = tc.parse("coco35l", coco["dataset"], "train", lines_per_shard=7, progress=False)
    rows = pa.concat_tables([pq.read_table(p) for p in summary.shards])
    assert rows.schema.names == ["key", "text", "language", "source"]
    rows = rows.to_pylist()
    captions = sum(len(c) for c in COCO_IMAGES.values())
    assert summary.lines == captions * len(LANGS) == 15 and len(summary.shards) == 3
    assert summary.per_language == {lang: captions for lang in ("ar", "de", "en", "ja")}
    assert {"key": "9", "text": "ja: a grey cat", "language": "ja", "source": "a grey cat"} in rows
    english = [(r["key"], r["text"]) for r in rows if r["language"] == "en"]
    assert sorted(english) == sorted((str(k), c) for k, cs in COCO_IMAGES.items() for c in cs)
    assert all(r["source"] is None for r in rows if r["language"] == "en")


def test_a_rerun_parses_only_the_missing_caption_shards(coco):
    first = tc.parse("coco35l", coco["dataset"], "train", lines_per_shard=4, progress=False)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.shards}
    first.shards[1].unlink()
    manifest = coco["dataset"] / "captions" / "train.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "complete": False}))  # a cut run
    second = tc.parse("coco35l", coco["dataset"], "train", lines_per_shard=4, progress=False)
    assert second.reused == len(first.shards) - 1
    for path in second.shards:
        mtime, data = before[path.name]
        assert path.read_bytes() == data
        if path != first.shards[1]:
            assert path.stat().st_mtime_ns == mtime
    assert tc.parse("coco35l", coco["dataset"], "train", lines_per_shard=4, progress=False).reused == 4


def test_parse_reads_an_older_gzip_release_and_plain_jsonl(tmp_path):
    for suffix in (".gz", ""):
        directory = tmp_path / f"copy{suffix}"
        write_captions(directory, "coco_mt_dev", jsonl(coco_records({5: ["one"]})), suffix)
        summary = tc.parse("coco35l", directory, "dev", progress=False)
        assert summary.rows == 4 and summary.source.name == f"coco_mt_dev.jsonl{suffix}"


def test_truncated_gzip_names_the_file_and_line_and_keeps_the_shards_before(tmp_path):
    records = coco_records({n: [f"caption {n} {'x' * (n % 7)}"] for n in range(1, 400)})
    path = write_captions(tmp_path, "coco_mt_train", jsonl(records), ".gz")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 3 // 4])
    with pytest.raises(
        FileFormatError, match=r"coco_mt_train\.jsonl\.gz: line (\d+): the file breaks off"
    ) as err:
        tc.parse("coco35l", tmp_path, "train", lines_per_shard=100, progress=False)
    line = int(re.search(r"line (\d+)", str(err.value)).group(1))
    kept = tc.caption_shards("coco35l", tmp_path, "train")
    assert line > 100 and len(kept) == (line - 1) // 100
    done = records[: len(kept) * 100]
    assert sum(pq.read_metadata(p).num_rows for p in kept) == len(done) + sum(
        r["trg_lang"] == "de" for r in done
    )


def test_truncated_bzip2_is_an_error_too(tmp_path):
    path = write_captions(tmp_path, "cc3m_mt_dev", jsonl(cc3m_records(range(1, 50))))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(FileFormatError, match=r"cc3m_mt_dev\.jsonl\.bz2: line \d+: the file breaks off"):
        tc.parse("cc3m35l", tmp_path, "dev", progress=False)


def test_a_file_that_is_not_bzip2_is_named(tmp_path):
    (tmp_path / "coco_mt_dev.jsonl.bz2").write_bytes(b"<html>Not Found</html>")
    with pytest.raises(FileFormatError, match=r"coco_mt_dev\.jsonl\.bz2: is not a bzip2 file"):
        tc.parse("coco35l", tmp_path, "dev", progress=False)


def test_a_missing_file_says_how_to_get_it(tmp_path):
    part_path(tmp_path / "coco_mt_dev.jsonl.bz2").write_bytes(b"BZh")
    with pytest.raises(InputError, match=r"incomplete.*pixglot data coco35l download --split dev"):
        tc.parse("coco35l", tmp_path, "dev", progress=False)


GOOD = record("image_id", "7_1", "de", "a cat", "eine Katze")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"image_id": "7_1", "src_lang": "en"', "not valid JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b'{"image_id": "7_1", "trg_lang": "\xff"}', "not UTF-8 (byte 0xff"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "trg_lang"}).encode(),
            "lacks the field(s) trg_lang",
        ),
        (json.dumps({**GOOD, "trg_lang": "quz"}).encode(), "unknown target language 'quz'"),
        (json.dumps({**GOOD, "src_lang": "fr"}).encode(), "source language 'fr', expected 'en'"),
        (
            json.dumps({**GOOD, "image_id": 7}).encode(),
            "image_id 7 is not '<COCO image id>_<caption number>'",
        ),
        (json.dumps({**GOOD, "translation_tokenized": None}).encode(), "'translation_tokenized' is NoneType"),
        (json.dumps({**GOOD, "caption_tokenized": "\ud800"}).encode(), "lone surrogate"),
    ],
    ids=[
        "cut-json",
        "array",
        "not-utf8",
        "missing-field",
        "unknown-language",
        "source",
        "id",
        "null",
        "surrogate",
    ],
)
def test_a_malformed_line_is_named_by_file_line_and_reason(tmp_path, line, reason):
    body = jsonl([GOOD, GOOD]) + line + b"\n" + jsonl([GOOD])
    write_captions(tmp_path, "coco_mt_dev", body)
    with pytest.raises(FileFormatError) as err:
        tc.parse("coco35l", tmp_path, "dev", progress=False)
    assert str(err.value).startswith(f"{tmp_path / 'coco_mt_dev.jsonl.bz2'}: line 3: ")
    assert reason in str(err.value)


def test_cc3m_lines_of_the_older_release_are_recognised(tmp_path):
    old = record("image_id", "abc", "de", "a", "b")
    write_captions(tmp_path, "cc3m_mt_dev", jsonl([old]))
    with pytest.raises(
        FileFormatError, match=r"line 1: lacks the field\(s\) rec_num.*download the file again"
    ):
        tc.parse("cc3m35l", tmp_path, "dev", progress=False)


def test_empty_translations_are_left_out_and_counted(tmp_path):
    records = coco_records({3: ["a dog"]}, ("de", "fr"))
    records[1]["translation_tokenized"] = "  "
    write_captions(tmp_path, "coco_mt_dev", jsonl(records))
    summary = tc.parse("coco35l", tmp_path, "dev", progress=False)
    assert summary.empty == 1 and summary.per_language == {"de": 1, "en": 1}


caption_text = st.text(min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(english=caption_text, translated=caption_text, ensure_ascii=st.booleans())
def test_any_caption_text_comes_through_as_written(english, translated, ensure_ascii):
    # Tabs, newlines, U+2028, quotes, emoji...: JSON escapes what it must, and the line stays one line.
    line = jsonl([record("rec_num", 12, "de", english, translated)], ensure_ascii)
    assert line.count(b"\n") == 1
    found = tc.parse_line(tc.CC3M, "train", line.rstrip(b"\n"))
    assert found[0] == tc.Caption("cc3m-train-12", translated, "de", english)
    assert found[1] == tc.Caption("cc3m-train-12", english, "en", None)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(caption_text, min_size=1, max_size=12))
def test_any_caption_text_survives_a_whole_file(tmp_path_factory, texts):
    directory = tmp_path_factory.mktemp("texts")
    records = [record("image_id", f"{i + 1}_1", "fr", f"en {i}", text) for i, text in enumerate(texts)]
    write_captions(directory, "coco_mt_dev", jsonl(records))
    summary = tc.parse("coco35l", directory, "dev", lines_per_shard=5, progress=False)
    rows = pa.concat_tables([pq.read_table(p) for p in summary.shards]).column("text").to_pylist()
    assert rows == [t for t in texts if t.strip()] and summary.empty == len(texts) - len(rows)


@given(language=st.text(min_size=0, max_size=6).filter(lambda c: c not in tc.TARGET_LANGUAGES))
def test_an_unknown_language_code_is_refused(language):
    line = json.dumps(record("image_id", "1_1", language, "a", "b")).encode()
    with pytest.raises(tc.LineError, match="unknown target language"):
        tc.parse_line(tc.COCO, "dev", line)
    with pytest.raises(InputError, match="unknown language code"):
        tc.check_languages(["de", language])


@given(language=st.sampled_from(tc.TARGET_LANGUAGES), number=st.integers(1, 10**9), n=st.integers(1, 7))
def test_every_published_language_and_id_is_accepted(language, number, n):
    coco = tc.parse_line(
        tc.COCO, "dev", json.dumps(record("image_id", f"{number}_{n}", language, "a", "b")).encode()
    )
    assert coco[0].key == str(number) and coco[0].language == language
    cc3m = tc.parse_line(
        tc.CC3M, "dev", json.dumps(record("rec_num", str(number), language, "a", "b")).encode()
    )
    assert cc3m[0].key == f"cc3m-dev-{number}" and tc.cc3m_record(cc3m[0].key) == number


# --- COCO-35L training shards -----------------------------------------------------------------------


def test_coco_prepare_writes_shards_the_trainer_reads(coco):
    summary = coco35l.prepare(
        coco["dataset"], coco_dir=coco["images"], out=coco["out"], rows_per_shard=5, progress=False
    )
    index = read_index([coco["out"]])
    assert sorted(index.keys) == ["42", "77", "9"] and sorted(index.languages) == ["ar", "de", "en", "ja"]
    assert len(index) == summary.build.rows == 4 * 4  # 4 captions of found images, 3 languages + English
    assert summary.build.images == 3
    assert (summary.build.missing_images, summary.build.missing_rows) == (1, 4)  # image 555
    for path in summary.build.shards:
        schema = pq.read_schema(path)
        assert all(schema.field(name).type == kind for name, kind in COLUMNS.items())
        assert schema.field("source").type == pa.string()
    rows = shard_rows(coco["out"])
    assert all(row["image"] == coco[row["key"]].read_bytes() for row in rows)
    assert {"key": "42", "text": "ar: two dogs", "language": "ar", "source": "two dogs"} in [
        {k: v for k, v in row.items() if k != "image"} for row in rows
    ]
    keys = [row["key"] for row in rows]
    assert len([key for key, _ in groupby(keys)]) == len(set(keys))  # each image's rows side by side


def test_coco_rerun_finishes_a_cut_build_and_keeps_what_was_written(coco):
    calls = 0
    images = coco35l.index_images(coco["images"])

    def cut_after_two_images(key):
        nonlocal calls
        calls += 1
        if calls > 5:  # 4 looks in the first pass, then the shards of the first bucket(s)
            raise KeyboardInterrupt
        return images.get(int(key))

    parsed = tc.parse("coco35l", coco["dataset"], "train", progress=False)
    with pytest.raises(KeyboardInterrupt):
        pair_shards.build(
            parsed.shards, coco["out"], cut_after_two_images, prefix="coco35l-train", rows_per_shard=2,
            images_state="3", progress=False,
        )  # fmt: skip
    written = {p.name: p.stat().st_mtime_ns for p in coco["out"].glob("*.parquet")}
    assert written
    summary = pair_shards.build(
        parsed.shards, coco["out"], lambda k: images.get(int(k)), prefix="coco35l-train", rows_per_shard=2,
        images_state="3", progress=False,
    )  # fmt: skip
    assert summary.reused == len(written) and summary.rows == 16
    assert all(p.stat().st_mtime_ns == written[p.name] for p in summary.shards if p.name in written)
    assert len(read_index([coco["out"]])) == 16


def test_coco_languages_filter_and_a_changed_request_rebuilds(coco, capsys):
    argv = ["data", "coco35l", "prepare", str(coco["dataset"]), "--coco-dir", str(coco["images"])]
    assert main([*argv, "--out", str(coco["out"]), "--languages", "de,en"]) == 0
    out = capsys.readouterr().out
    assert "8 rows (3 images, 2 languages)" in out and "images not found: 1 (2 captions left out)" in out
    assert sorted(read_index([coco["out"]]).languages) == ["de", "en"]
    assert main([*argv, "--out", str(coco["out"]), "--languages", "ja"]) == 0
    assert read_index([coco["out"]]).languages == ["ja"]
    assert main([*argv, "--out", str(coco["out"]), "--languages", "xx"]) == 2
    assert "unknown language code(s) 'xx'" in capsys.readouterr().err


def test_coco_dir_without_images_is_a_clear_error(coco, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no COCO images"):
        coco35l.prepare(coco["dataset"], coco_dir=tmp_path / "empty", out=coco["out"], progress=False)


# --- CC3M-35L: images from the web -------------------------------------------------------------------


@pytest.fixture
def cc3m(tmp_path, server):
    """Translations of records 1-5 of a 6-line CC3M TSV; record 3's image is gone (404), record 4's
    address answers with a web page, record 6 is not translated."""
    dataset = tmp_path / "cc3m35l"
    write_captions(dataset, "cc3m_mt_dev", jsonl(cc3m_records(range(1, 6))))
    server.files.update(
        {
            "/i/1.jpg": picture(1),
            "/i/2": picture(2, "PNG"),
            "/i/4.jpg": b"<html>moved</html>",
            "/i/5": picture(5),
        }
    )
    names = ["1.jpg", "2", "3.jpg", "4.jpg", "5", "6.jpg"]
    tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
    tsv.write_text("".join(f"caption {n}\t{server.url}/i/{name}\n" for n, name in enumerate(names, 1)))
    return {"dataset": dataset, "tsv": tsv, "out": tmp_path / "shards"}


def prepare_cc3m(cc3m, **options):
    return cc3m35l.prepare(
        cc3m["dataset"], tsv=cc3m["tsv"], out=cc3m["out"], split="dev", progress=False, **options
    )


def test_cc3m_prepare_fetches_counts_failures_and_a_rerun_asks_nothing_again(cc3m, server):
    summary = prepare_cc3m(cc3m, workers=2)
    assert summary.fetch.fetched == 3 and dict(summary.fetch.failed) == {"http_404": 1, "not_an_image": 1}
    assert sorted(path for path, _ in server.requests) == ["/i/1.jpg", "/i/2", "/i/3.jpg", "/i/4.jpg", "/i/5"]
    assert all(name.startswith("Pixglot/") for name in server.clients)
    images = cc3m["dataset"] / "images" / "dev" / "0000"
    assert sorted(p.name for p in images.iterdir()) == ["1.jpg", "2.png", "5.jpg"]
    index = read_index([cc3m["out"]])
    assert sorted(index.keys) == ["cc3m-dev-1", "cc3m-dev-2", "cc3m-dev-5"]
    assert len(index) == 9 and sorted(index.languages) == ["de", "en", "fr"]
    assert (summary.build.missing_images, summary.build.missing_rows) == (2, 6)
    rows = shard_rows(cc3m["out"])
    assert {r["image"] for r in rows if r["key"] == "cc3m-dev-2"} == {picture(2, "PNG")}

    again = prepare_cc3m(cc3m, workers=2)
    assert len(server.requests) == 5
    assert (again.fetch.fetched, again.fetch.present, again.fetch.failed_before) == (0, 3, 2)
    assert again.build.reused == len(again.build.shards) and again.build.rows == 9


def test_a_transient_failure_is_asked_again_on_the_next_run(cc3m, server):
    server.failures = 1  # the first request answers 503
    first = prepare_cc3m(cc3m, workers=1)
    assert first.fetch.failed["http_503"] == 1 and first.fetch.fetched == 2
    second = prepare_cc3m(cc3m, workers=1)
    assert second.fetch.fetched == 1 and second.fetch.failed_before == 2
    assert server.requests[-1] == ("/i/1.jpg", None)
    assert second.build.rows == 9  # the new image makes the shards anew


def test_the_cc3m_command_prints_what_it_fetched(cc3m, capsys):
    argv = ["data", "cc3m35l", "prepare", str(cc3m["dataset"]), "--cc3m-tsv", str(cc3m["tsv"])]
    assert main([*argv, "--out", str(cc3m["out"]), "--split", "dev", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "images: 3 fetched, 0 already there, 2 failed (http_404 1, not_an_image 1)" in out
    assert "9 rows (3 images, 3 languages)" in out
    assert main([*argv, "--out", str(cc3m["out"]), "--split", "dev", "--workers", "50"]) == 2
    assert "workers must be between 1 and 8" in capsys.readouterr().err


def test_a_tsv_of_the_wrong_split_or_format_is_refused_before_any_request(cc3m, server, tmp_path):
    short = tmp_path / "short.tsv"
    short.write_text("one\thttp://example.invalid/1.jpg\n")
    with pytest.raises(InputError, match=r"1 line\(s\), but the dev translations name record 5"):
        prepare_cc3m({**cc3m, "tsv": short})
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\thttp://x.invalid/1\nno tab here\n" + "c\thttp://x.invalid/3\n" * 4)
    with pytest.raises(FileFormatError, match=r"bad\.tsv: line 2: expected caption<TAB>URL, found 1 field"):
        prepare_cc3m({**cc3m, "tsv": bad})
    assert server.requests == []


def test_a_server_that_never_answers_times_out(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are accepted by the kernel, then nothing is ever sent
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x.jpg"
        start = time.monotonic()
        summary = web_images.fetch([(1, url)], web_images.ImageFolder(tmp_path), timeout=0.5, progress=False)
    assert dict(summary.failed) == {"timeout": 1} and time.monotonic() - start < 5
    assert web_images.ImageFolder(tmp_path).failed() == set()  # worth another try


def test_image_suffix_knows_images_from_the_rest():
    assert web_images.image_suffix(picture(0)) == ".jpg"
    assert web_images.image_suffix(picture(0, "PNG")) == ".png"
    assert web_images.image_suffix(picture(0)[:40]) is None
    assert web_images.image_suffix(b"") is None

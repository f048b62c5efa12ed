"""`pixglot render` and `pixglot fonts doctor` through the real CLI entry point."""

from __future__ import annotations

import gc
import json
import os
import warnings

import numpy as np
from PIL import Image

from pixglot.cli import main
from rendering import doctor, fontstack
from rendering.fontstack import FontStack, default_stack


def test_render_writes_the_png_and_reports(tmp_path, capsys):
    out = tmp_path / "sub" / "query.png"
    assert main(["render", "قطة \u0378", "-o", str(out), "--report"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["missing"] == ["U+0378"] and report["complete"] is False
    image = np.asarray(Image.open(out))
    assert image.shape == (224, 224, 3) and image.min() < 100


def test_render_unifont_style(tmp_path):
    out = tmp_path / "u.png"
    assert main(["render", "Hello", "--style", "unifont", "-o", str(out)]) == 0
    assert set(np.unique(np.asarray(Image.open(out)))) <= {0, 127}


def test_fonts_doctor_covers_all_36_languages(capsys):
    assert main(["fonts", "doctor", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    languages = {c["language"]: c for c in result["languages"]}
    assert len(languages) == 36
    assert all(c["covered"] for c in languages.values())
    assert languages["ja"]["fonts"] == ["cjk-jp"] and languages["th"]["fonts"] == ["thai"]
    assert all(len(f["sha256"]) == 64 for f in result["fonts"] if not f.get("missing"))


def test_doctor_fails_a_language_whose_font_is_gone():
    full = default_stack()
    without_thai = FontStack([f for f in full.fonts if f.id != "thai"], ["NotoSansThai-Regular.ttf"])
    checks = {c.language: c for c in doctor.check_languages(without_thai)}
    assert not checks["th"].covered and checks["th"].missing
    assert checks["en"].covered
    assert not doctor.report(without_thai)["ok"]


def test_font_path_directories_are_searched_first(tmp_path, monkeypatch):
    # A machine whose fonts live outside Debian's folders: PIXGLOT_FONT_PATH names them.
    thai = next(f for f in default_stack().fonts if f.id == "thai")
    (tmp_path / thai.path.name).write_bytes(thai.path.read_bytes())
    monkeypatch.setenv(fontstack.FONT_PATH_ENV, f"/nonexistent{os.pathsep}{tmp_path}")
    stack = FontStack.from_file()
    assert next(f for f in stack.fonts if f.id == "thai").path == tmp_path / thai.path.name
    assert next(f for f in stack.fonts if f.id == "latin").path == default_stack().fonts[0].path


def test_loading_the_font_stack_leaves_no_font_file_open():
    # It is loaded once per process, workers included; open files would pile up with each.
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        stack = FontStack.from_file()
        gc.collect()
    assert len(stack.fonts) > 10
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []

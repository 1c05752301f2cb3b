"""verification.core.outputs: atomic writes (an interrupted write leaves the previous file or none), output paths
checked before any work, one JSON convention."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from verification.core import outputs


def test_write_atomic_replaces_and_keeps_the_ordinary_mode(tmp_path):
    path = tmp_path / "r.json"
    outputs.write_atomic(path, "first")
    outputs.write_atomic(path, "second")
    assert path.read_text() == "second"
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "r.json"
    path.write_text("previous")

    def replace(src, dst):
        raise failure("interrupted while renaming")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(failure):
        outputs.write_json(path, {"a": 1})
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_an_interrupted_first_write_leaves_no_file(tmp_path):
    path = tmp_path / "plot.png"
    with pytest.raises(KeyboardInterrupt):
        with outputs.atomic_path(path) as tmp:
            tmp.write_bytes(b"half a png")
            raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())


def test_check_output_file_creates_parents_and_rejects_folders(tmp_path):
    target = outputs.check_output_file(tmp_path / "a" / "b" / "r.json")
    assert target.parent.is_dir() and not target.exists()
    with pytest.raises(outputs.OutputError, match="is a folder"):
        outputs.check_output_file(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(outputs.OutputError, match="not a folder"):
        outputs.check_output_file(blocker / "r.json")
    with pytest.raises(outputs.OutputError, match="cannot create folder"):
        outputs.check_output_file("/proc/iclkd-no-such-dir/r.json")
    with pytest.raises(outputs.OutputError, match="cannot write"):
        outputs.check_output_file("/proc/r.json")


def test_check_output_dir(tmp_path):
    assert outputs.check_output_dir(tmp_path / "x" / "y").is_dir()
    with pytest.raises(outputs.OutputError):
        outputs.check_output_dir("/proc/iclkd-no-such-dir")


def test_jsonable_one_convention():
    value = {"a": np.float32(1.5), "b": np.arange(3), "nan": math.nan, "inf": [math.inf, -math.inf],
             "path": Path("x/y"), 3: (np.bool_(True),)}
    assert outputs.jsonable(value) == {"a": 1.5, "b": [0, 1, 2], "nan": "nan", "inf": ["inf", "-inf"],
                                       "path": "x/y", "3": [True]}
    json.dumps(outputs.jsonable(value), allow_nan=False)


def test_write_csv(tmp_path):
    path = outputs.write_csv(tmp_path / "t.csv", [{"a": 1, "b": None}, {"a": 2, "c": 3}], ["a", "b"])
    assert path.read_text().splitlines() == ["a,b", "1,", "2,"]

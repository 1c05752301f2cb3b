"""Writing results: output paths checked before any work, atomic files, one JSON convention.

Every file the command line writes (reports, CSVs, Markdown, plots, checkpoints) goes through
:func:`write_atomic` (or :func:`atomic_path` for writers that want a file name, such as
``savefig``): the bytes go to a temporary file in the destination's folder, which is then renamed
over the destination with :func:`os.replace`. An interrupted run (Ctrl-C, a full disk, a killed job)
therefore leaves either the previous file or none, never a truncated one that looks complete.

Output paths given on the command line are checked by :func:`check_output_file` and
:func:`check_output_dir` while the arguments are parsed, before anything is computed: the missing
parent folders are created (the same way by every subcommand) and a probe file is written and
removed, so an unwritable path fails in a second with a one-line :class:`OutputError`.

JSON convention (:func:`jsonable`): NumPy and JAX scalars and arrays become Python numbers and
nested lists; non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (strict JSON
has no NaN, and ``null`` would not tell a NaN from a missing value); paths become strings.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verification.core.errors import OutputError
from verification.core.process import is_writer

#: where the benchmarks and experiments write when no folder is given (covered by .gitignore)
DEFAULT_OUTPUT_ROOT = Path("iclkd-out")


def jsonable(value: Any) -> Any:
    """``value`` with arrays, NumPy/JAX scalars, non-finite floats and paths made JSON-safe (module docstring)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        return jsonable(arr.tolist()) if arr.ndim else jsonable(arr.item())
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _probe(folder: Path) -> None:
    """Writes and removes a file in ``folder``: the only reliable writability test (os.access lies for root, NFS)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".iclkd-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise OutputError(f"cannot write in {folder}: {err.strerror or err}") from None


def _make_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create folder {folder}: {err.strerror or err}") from None


def check_output_file(path: str | os.PathLike) -> Path:
    """The absolute path of an output file, its parent folders created and checked for writing.

    Raises:
      OutputError: ``path`` is an existing folder, or its folder cannot be created or written.
    """
    target = _absolute(path)
    if os.fspath(path).endswith(os.sep) or target.is_dir():
        raise OutputError(f"{target} is a folder; give a file name")
    if target.exists() and not os.access(target, os.W_OK) and os.geteuid() != 0:
        raise OutputError(f"{target} is not writable")
    _make_folder(target.parent)
    _probe(target.parent)
    return target


def check_output_dir(path: str | os.PathLike) -> Path:
    """The absolute path of an output folder, created (with its parents) and checked for writing.

    Raises:
      OutputError: ``path`` exists and is not a folder, or cannot be created or written.
    """
    target = _absolute(path)
    _make_folder(target)
    _probe(target)
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on a clean exit it is renamed over ``path``, else removed.

    For writers that need a file name (``fig.savefig(tmp)``, ``np.savez(tmp)``)::

        with atomic_path(out / "plot.png") as tmp:
            fig.savefig(tmp, format="png")
    """
    target = _absolute(path)
    _make_folder(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # mkstemp creates 0600; give the file the mode an ordinary open() would (or the replaced file's)
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask())
        yield Path(tmp)
        if is_writer():
            os.replace(tmp, target)
        else:  # a multi-process run: process 0 alone writes (verification.core.process)
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (a temporary file in the same folder, fsync, ``os.replace``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    return _absolute(path)


def write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 2) -> Path:
    """``value`` made :func:`jsonable` and written atomically as strict JSON (no bare NaN)."""
    return write_atomic(path, json.dumps(jsonable(value), indent=indent, allow_nan=False) + "\n")


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]) -> Path:
    """Writes ``rows`` (missing and None fields empty) as CSV atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fieldnames})
    return write_atomic(path, buffer.getvalue())

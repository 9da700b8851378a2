"""Reading the JSON files vibtools stores (results records, attack-study records, many-draw objectives), bounded.

A stored file is read only when it is a regular file (not a FIFO, which would block, nor a device such as
/dev/zero behind a symlink, which never ends), of at most :data:`MAX_BYTES`, in strict JSON (no bare NaN or
Infinity, which vibtools never writes) nested at most :data:`MAX_DEPTH` deep. Anything else is one
:class:`StoredJSONError` line that names the file and what is wrong with it. Torch-free, so that the readers of
stored results load without it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

MAX_BYTES = 16 * 2**20  # the largest record is about 0.2 MB; a file 80 times larger is not one of ours
MAX_DEPTH = 32  # a record nests 4 deep


class StoredJSONError(ValueError):
    """A stored JSON file that cannot be read as one: what is wrong, in one line."""


def _refuse_constant(name: str):
    raise ValueError(f"holds a bare {name}, which strict JSON does not allow")


def _depth(obj, limit: int) -> int:
    """The nesting depth of a parsed JSON value, counted up to ``limit + 1`` at most."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def read_json(path: str | os.PathLike, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH):
    """The parsed contents of a stored JSON file, read within bounds.

    Args:
        path: the file (a symlink is followed, and what it points to must be a regular file).
        max_bytes: the largest file read.
        max_depth: the deepest nesting of lists and objects accepted.
    Returns:
        The parsed value.
    Raises:
        StoredJSONError: not a regular file, too large, not UTF-8, not strict JSON, or nested too deep.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise StoredJSONError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise StoredJSONError(f"is {kind}")
    if info.st_size > max_bytes:
        raise StoredJSONError(f"is {info.st_size} bytes, more than the {max_bytes} a stored file may have")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise StoredJSONError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    except MemoryError:
        raise StoredJSONError(f"could not be read into the memory available ({info.st_size} bytes)") from None
    if len(data) > max_bytes:
        raise StoredJSONError(f"grew past the {max_bytes} bytes a stored file may have while it was read")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise StoredJSONError("is not UTF-8 text") from None
    except RecursionError:
        raise StoredJSONError(f"is nested deeper than the {max_depth} levels a stored file may have") from None
    except MemoryError:
        raise StoredJSONError(f"could not be parsed in the memory available ({len(data)} bytes)") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError, as is a bare NaN
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoredJSONError(f"is not valid JSON ({first})") from None
    if _depth(value, max_depth) > max_depth:
        raise StoredJSONError(f"is nested deeper than the {max_depth} levels a stored file may have")
    return value

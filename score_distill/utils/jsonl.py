"""Crash-safe JSON Lines storage.

Every stage appends its records here, so a crash (kill -9, Ctrl-C, power loss) must never leave
a half-written record that the next run reads as data or as a parse error. Two rules:

* appends are one ``write`` of whole lines followed by ``fsync``; on open, a torn last line (no
  trailing newline) is cut away before anything new is appended ("verified tail");
* whole-file writes go to a temporary file that is renamed over the target (atomic on POSIX).

Reading reports a malformed line as :class:`DataError` naming the file and the 1-based line.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

T = TypeVar("T", bound=BaseModel)


class DataError(ValueError):
    """A record that cannot be read. The message names file and line so users can fix it."""

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def repair_tail(path: str | os.PathLike) -> int:
    """Cut a torn last line (written by a process killed mid-append). Returns bytes removed."""
    p = Path(path)
    if not p.exists():
        return 0
    size = p.stat().st_size
    if size == 0:
        return 0
    with open(p, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # Walk back to the previous newline; everything after it is a torn record.
        block = 65536
        pos = size
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def _dump(record: Any) -> str:
    """One JSON line. Text that cannot be encoded as UTF-8 (lone surrogates, e.g. from a tool call
    the model's code made with "\\ud800") is written with \\u escapes instead: still valid
    JSON and UTF-8, read back unchanged, and the record is not lost."""
    if isinstance(record, BaseModel):
        try:
            return record.model_dump_json()
        except PydanticSerializationError:
            return json.dumps(record.model_dump(mode="json"), ensure_ascii=True)
    return _dumps(record)


def _dumps(obj: Any, **kw: Any) -> str:
    text = json.dumps(obj, ensure_ascii=False, **kw)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, **kw)
    return text


def append_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Append records as whole lines, durably. Returns the number written."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(p)
    lines = [_dump(r) + "\n" for r in records]
    if not lines:
        return 0
    data = "".join(lines).encode("utf-8")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(lines)


def write_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    """Write a whole file so readers see the old or the new content, never a mix."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        _fsync_dir(p.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Replace a JSONL file atomically."""
    lines = [_dump(r) + "\n" for r in records]
    write_atomic(path, "".join(lines))
    return len(lines)


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    write_atomic(path, _dumps(obj, indent=indent, default=str) + "\n")


def iter_json_lines(path: str | os.PathLike, *, allow_torn_tail: bool = True) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) pairs. Blank lines are skipped.

    A torn last line (no newline at end of file, not valid JSON) is what a crash mid-append
    leaves behind; it is skipped when ``allow_torn_tail`` since the writer will cut it anyway.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(p, None, "file not found")
    with open(p, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    ends_clean = raw.endswith(b"\n") or not raw
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_tail = i == len(lines) and not ends_clean
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            if is_tail and allow_torn_tail:
                return
            raise DataError(p, i, f"invalid UTF-8 at byte {e.start}") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            if is_tail and allow_torn_tail:
                return
            raise DataError(p, i, f"invalid JSON ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # an integer of > 4300 digits; nesting deeper than the stack
            if is_tail and allow_torn_tail:
                return
            raise DataError(p, i, f"invalid JSON ({type(e).__name__}: {str(e)[:80]})") from None
        if not isinstance(obj, dict):
            raise DataError(p, i, f"expected a JSON object, got {type(obj).__name__}")
        yield i, obj


def read_jsonl(path: str | os.PathLike, model: type[T] | None = None) -> list[Any]:
    """Read a JSONL file, validating each line against ``model`` when given."""
    out: list[Any] = []
    for lineno, obj in iter_json_lines(path):
        if model is None:
            out.append(obj)
            continue
        try:
            out.append(model.model_validate(obj))
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "<record>"
            raise DataError(path, lineno, f"field '{loc}': {first['msg']}") from None
    return out


def read_json_list(path: str | os.PathLike) -> list:
    """A whole-file JSON list (the reference's and LLaMA-Factory's format); errors name file and line."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(p, None, "file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(p, None, f"invalid UTF-8 at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise DataError(p, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, list):
        raise DataError(p, None, f"expected a JSON list of records, got {type(data).__name__}")
    return data

"""Sweep results files: one record per grid point, in the format the file's suffix names.

=============  ==============================================================================
suffix         format
=============  ==============================================================================
``.jsonl``     JSON lines, one object per point, appended (flushed and synced) as it finishes
``.json``      a JSON array of the records, rewritten (atomically) after each point
``.csv``       CSV with a header row, rewritten (atomically) after each point
``.parquet``   Parquet (needs ``pyarrow``), rewritten (atomically) after each point
=============  ==============================================================================

Any other suffix is refused. Every record carries ``key`` (the canonical point,
:func:`shiftsim.sweep.point_key`), ``config`` (the identity of the target and its base
configuration), the point's parameters, then its metrics, or ``error`` for a point that failed.

An append can be torn by a crash (only JSON lines are appended): :meth:`ResultsFile.load` drops
a torn last line and keeps a complete last record that only lacks its final newline. A rewrite
goes to a temporary file in the same folder, is synced, then renamed over the results file, so
a reader sees the old file or the new one, never half of one.

A :class:`ResultsFile` also owns a lock file (``<name>.lock`` next to it, an advisory
``flock``/``LockFileEx`` lock, released by the system when its holder dies), which
:func:`shiftsim.sweep.sweep` holds for a whole run. The lock file may stay behind; it holds no
data and may be deleted when no sweep runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["FORMATS", "ResultsFile", "read_results", "results_format"]

FORMATS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
"""Results file suffix -> format."""

Record = dict[str, Any]


def results_format(path: str | Path) -> str:
    """The format a results file's suffix names (``jsonl``, ``json``, ``csv``, ``parquet``).

    Raises
    ------
    ValueError
        An unknown suffix, or ``.parquet`` without ``pyarrow``.

    Examples
    --------
    >>> results_format("runs/r.CSV")
    'csv'
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or a Path, got {type(path).__name__}")
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"results file {str(path)!r}: unknown suffix {suffix or '(none)'!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    fmt = FORMATS[suffix]
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ValueError(
            f"results file {str(path)!r}: .parquet needs the pyarrow package "
            "(pip install pyarrow), or use .jsonl or .csv"
        )
    return fmt


def read_results(path: str | Path) -> list[Record]:
    """The records of a results file, in file order, whatever its format (see the module doc).

    Raises
    ------
    ValueError
        Missing or unreadable file, unknown suffix, or content that is not sweep results
        (a record without ``key``); a torn last JSON line is skipped, not an error.
    """
    return ResultsFile(path).load(repair=False)


def _plain_cell(value: Any) -> Any:
    """A cell read back from CSV or Parquet as a JSON-friendly Python value (NaN -> None)."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class ResultsFile:
    """A results file: read, repair, append, rewrite and lock (see the module doc).

    Parameters
    ----------
    path : str or Path
        Its suffix picks the format (:data:`FORMATS`).
    """

    def __init__(self, path: str | Path) -> None:
        self.format = results_format(path)
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"ResultsFile({str(self.path)!r}, format={self.format!r})"

    # -------------------------------------------------------------------- checks
    def check_writable(self) -> None:
        """Raise ``ValueError`` naming the path unless results can be written there.

        Called before any point is computed. Creates nothing that stays behind (an empty
        JSON-lines file at most).
        """
        where = f"results file {str(self.path)!r}"
        parent = self.path.parent
        if self.path.exists() and not self.path.is_file():
            raise ValueError(f"{where} is a directory or not a regular file")
        if not parent.is_dir():
            raise ValueError(f"{where}: no such folder {str(parent)!r}")
        try:
            if self.path.exists():
                with self.path.open("ab"):
                    pass
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=parent)
            os.close(fd)
            os.unlink(tmp)
            with self.lock_path.open("ab"):
                pass
        except OSError as exc:
            raise ValueError(f"{where} is not writable: {exc.strerror or exc}") from None

    # -------------------------------------------------------------------- lock
    @contextlib.contextmanager
    def lock(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the file's exclusive lock for the ``with`` block.

        Parameters
        ----------
        on_wait : callable, optional
            Called once (no arguments) when another process holds the lock, before blocking.
        """
        with self.lock_path.open("ab") as fh:
            if not _try_lock(fh):
                if on_wait is not None:
                    on_wait()
                _lock_blocking(fh)
            try:
                yield
            finally:
                _unlock(fh)

    # -------------------------------------------------------------------- read
    def load(self, *, repair: bool = True) -> list[Record]:
        """Read every record (none when the file does not exist or is empty).

        With ``repair`` (JSON lines): drop a torn last line, and end a complete last record
        that lacks its final newline with one, so that appends start on a fresh line.
        """
        if not self.path.exists():
            if not repair:
                raise ValueError(f"{self.path}: no such results file")
            return []
        if not self.path.is_file():
            raise ValueError(f"{self.path}: is a directory, not a results file")
        try:
            if self.format == "jsonl":
                records = self._load_jsonl(repair)
            elif self.format == "json":
                records = self._load_json()
            else:
                records = self._load_frame()
        except OSError as exc:
            raise ValueError(f"{self.path}: cannot read results file: {exc.strerror}") from None
        return records

    def _load_jsonl(self, repair: bool) -> list[Record]:
        data = self.path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: not a results file (not UTF-8 text)") from None
        lines = text.split("\n")  # the last item is "" when the file ends with a newline
        records: list[Record] = []
        torn = False
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            rec = _parse_record(line)
            if rec is None:
                if i == len(lines):  # a torn last line: a crash in the middle of an append
                    torn = True
                    continue
                raise ValueError(
                    f"{self.path}: line {i}: not a sweep result (JSON object with key)"
                )
            records.append(rec)
        if repair and data and not data.endswith(b"\n"):
            if torn:
                with self.path.open("r+b") as fh:
                    fh.truncate(data.rfind(b"\n") + 1)
            else:  # a complete last record that lacks only its newline: keep it
                with self.path.open("ab") as fh:
                    fh.write(b"\n")
                    _sync(fh)
        return records

    def _load_json(self) -> list[Record]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: not a results file (not UTF-8 text)") from None
        if not text.strip():
            return []
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError(
                f"{self.path}: not a sweep results file (a JSON array of records)"
            ) from None
        if not isinstance(data, list):
            raise ValueError(f"{self.path}: not a sweep results file (a JSON array of records)")
        for i, rec in enumerate(data):
            if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
                raise ValueError(f"{self.path}: record {i}: not a sweep result (no key)")
        return data

    def _load_frame(self) -> list[Record]:
        import pandas as pd

        if self.path.stat().st_size == 0:
            return []
        try:
            if self.format == "csv":
                frame = pd.read_csv(self.path, dtype={"key": str, "config": str, "error": str})
            else:
                frame = pd.read_parquet(self.path)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError, ImportError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{self.path}: not a sweep results file: {first}") from None
        except Exception as exc:  # pyarrow raises its own error types on a bad file
            raise ValueError(
                f"{self.path}: not a sweep results file: {type(exc).__name__}: {exc}"
            ) from None
        if "key" not in frame.columns:
            cols = ", ".join(map(str, frame.columns[:5]))
            raise ValueError(
                f"{self.path}: not a sweep results file (no 'key' column; columns: {cols})"
            )
        return [
            {k: _plain_cell(v) for k, v in rec.items()} for rec in frame.to_dict(orient="records")
        ]

    # -------------------------------------------------------------------- write
    def append(self, record: Record, records: Sequence[Record]) -> None:
        """Store one more record; ``records`` are all the records the file holds after it."""
        if self.format == "jsonl":
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
                _sync(fh)
        else:
            self.rewrite(records)

    def rewrite(self, records: Sequence[Record]) -> None:
        """Replace the file's content by ``records``, atomically."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.chmod(tmp, _file_mode(self.path))  # mkstemp makes 0600 files
            with os.fdopen(fd, "wb") as fh:
                self._write(fh, records)
                _sync(fh)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _write(self, fh: IO[bytes], records: Sequence[Record]) -> None:
        if self.format == "jsonl":
            fh.write("".join(json.dumps(r) + "\n" for r in records).encode("utf-8"))
        elif self.format == "json":
            fh.write((json.dumps(list(records), indent=1) + "\n").encode("utf-8"))
        else:
            import pandas as pd

            frame = pd.DataFrame(list(records))
            if self.format == "csv":
                frame.to_csv(fh, index=False)
            else:
                for col in frame.columns:  # pyarrow wants one type per column
                    if frame[col].dtype == object and frame[col].map(type).nunique() > 2:
                        frame[col] = frame[col].map(lambda v: None if v is None else str(v))
                frame.to_parquet(fh, index=False)


def _parse_record(line: str) -> Record | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
        return None
    return rec


def _file_mode(path: Path) -> int:
    """The mode of ``path`` if it exists, else that of a new file (0666 less the umask)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def _sync(fh: IO[Any]) -> None:
    fh.flush()
    os.fsync(fh.fileno())


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fh: IO[bytes]) -> bool:
        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _lock_blocking(fh: IO[bytes]) -> None:
        while not _try_lock(fh):
            import time

            time.sleep(0.2)

    def _unlock(fh: IO[bytes]) -> None:
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fh: IO[bytes]) -> bool:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _lock_blocking(fh: IO[bytes]) -> None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)

    def _unlock(fh: IO[bytes]) -> None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

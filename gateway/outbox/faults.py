"""What went wrong with the spool, said as what it is.

SQLite reports a full disk as SQLITE_FULL only when a write comes back short;
a write refused outright (EFBIG past the file size limit, ENOSPC on some
file systems) is SQLITE_IOERR_WRITE. So an I/O error is checked against the
file system's free space and the process's RLIMIT_FSIZE before it is called one.
"""

from __future__ import annotations

import os
import resource
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

SpoolState = Literal["ok", "full", "readonly", "io_error", "missing"]

#: Below this many free bytes on its file system the spool counts as full.
FULL_FREE_BYTES = 256 * 1024


class SpoolWriteError(Exception):
    """A spool transaction failed; `state` says why (full, readonly, io_error, missing)."""

    def __init__(self, state: SpoolState, text: str) -> None:
        super().__init__(text)
        self.state: SpoolState = state


def free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def file_size_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def classify(exc: BaseException, files: Iterable[Path], page_size: int) -> SpoolWriteError:
    """Turn an exception from a spool transaction into a SpoolWriteError saying what it is."""
    if isinstance(exc, SpoolWriteError):
        return exc
    files = list(files)
    name = getattr(exc, "sqlite_errorname", "") or ""
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    primary = code & 0xFF
    detail = f"{exc}" + (f" [{name}]" if name else "")
    if primary == sqlite3.SQLITE_READONLY or (isinstance(exc, OSError) and exc.errno in (
            30, 13, 1)):  # EROFS, EACCES, EPERM
        if name == "SQLITE_READONLY_DBMOVED":
            return SpoolWriteError("missing", f"the spool file was moved or deleted ({detail})")
        return SpoolWriteError("readonly", f"the spool is read-only ({detail})")
    if isinstance(exc, OSError) and exc.errno in (28, 27):  # ENOSPC, EFBIG
        return _full(files, detail, page_size) or SpoolWriteError("full", f"disk full ({detail})")
    if primary == sqlite3.SQLITE_FULL:
        return _full(files, detail, page_size) or SpoolWriteError(
            "full", f"the spool's database is full ({detail})")
    if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN) or isinstance(exc, OSError):
        full = _full(files, detail, page_size)
        if full is not None:
            return full
        if files and not files[0].parent.exists():
            return SpoolWriteError("missing", f"the spool's directory is gone ({detail})")
        return SpoolWriteError("io_error", f"I/O error ({detail})")
    return SpoolWriteError("io_error", detail)


def _full(files: list[Path], detail: str, page_size: int) -> SpoolWriteError | None:
    """A SpoolWriteError('full', ...) if the disk or the file size limit is reached."""
    if not files:
        return None
    free = free_bytes(files[0].parent)
    if free is not None and free < FULL_FREE_BYTES:
        return SpoolWriteError(
            "full", f"disk full: {free // 1024} KiB free on the spool's file system ({detail})")
    limit = file_size_limit()
    if limit is not None:
        for f in files:
            try:
                size = f.stat().st_size
            except OSError:
                continue
            if size + page_size > limit:
                return SpoolWriteError(
                    "full", f"file size limit reached: {f.name} is {size} bytes, RLIMIT_FSIZE "
                    f"(ulimit -f, LimitFSIZE=) is {limit} ({detail})")
    return None

"""Safe writing: atomic file replacement (write a temporary name in the same folder, then rename
over the target, so readers and a crash see the old file or the new one, never half of one) and an
exclusive lock so two runs never write the same collection."""
from __future__ import annotations

import csv
import io
import os
import uuid
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path`` with the same suffix; on success rename it to
    ``path``, on error remove it. Creates the parent folder.

    Raises:
        OSError: from the block or the rename; one without a file name (a ``write`` on a full disk)
            is re-raised naming ``path``, so the message says where.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:  # a failed write() (ENOSPC) names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def exclusive_lock(folder: Path, what: str):
    """Hold an exclusive advisory lock (``fcntl.flock``) on ``<folder>/.lock`` for the block.

    A second process asking for the same lock is refused at once instead of waiting, so two runs
    never write the same outputs; the lock dies with its process (``kill -9`` included).

    Raises:
        ImgclustError: another process holds the lock; the message names it and ``what`` it does.
    """
    import fcntl

    from .errors import ImgclustError

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ImgclustError(f"{folder}: {holder} is already working on this collection; "
                                f"wait for it to finish before running {what}") from None
        handle.seek(0)
        handle.truncate()
        try:
            handle.write(f"imgclust (pid {os.getpid()})")
            handle.flush()
        except OSError as exc:  # full disk: the write names no file
            raise OSError(exc.errno, exc.strerror, str(folder / ".lock")) from exc
        try:
            yield
        finally:
            handle.truncate(0)


def atomic_write_csv(path: Path, header: list[str], rows) -> None:
    """Write a CSV table (``header``, then each row of ``rows``) to ``path`` atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())

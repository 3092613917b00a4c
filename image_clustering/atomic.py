"""Safe writing: atomic file replacement (write a temporary name in the same folder, then rename
over the target, so readers and a crash see the old file or the new one, never half of one), an
exclusive lock so two runs never write the same collection, and CSV cells that a spreadsheet
shows as text, never runs as a formula (:func:`neutralise_cell`, undone by :func:`restore_cell`)."""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import stat
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
        if exc.filename is None and exc.errno is None:  # numpy's tofile: "25600 requested and 11232 written"
            code = errno.ENOSPC if _full(path.parent) else errno.EIO
            raise OSError(code, f"{os.strerror(code)} ({exc})", str(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (almost) no room left: under 64 KiB for us."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically.

    File names that are not valid UTF-8 reach Python as lone surrogates (``os.fsdecode``); they are
    written back as the original bytes (``surrogateescape``), so such a name round-trips exactly
    through :func:`read_text`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def atomic_write_json(path: Path, doc, indent: int | None = 1) -> None:
    """Write ``doc`` as readable UTF-8 JSON atomically; the lone surrogates of file names that are
    not UTF-8 become ``\\udcXX`` escapes, which JSON readers turn back into the same string."""
    text = json.dumps(doc, indent=indent, ensure_ascii=False)
    atomic_write_text(path, re.sub("[\udc80-\udcff]", lambda m: f"\\u{ord(m.group()):04x}", text))


def read_text(path: Path) -> str:
    """Read a text file written by :func:`atomic_write_text` (UTF-8; undecodable bytes become the
    lone surrogates a file name would have)."""
    return Path(path).read_text(encoding="utf-8", errors="surrogateescape")


_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``, through
    the C library): every observer, and a crash at any moment, sees either the old pair or the
    swapped pair.

    Returns:
        False where the system or file system cannot do it (the caller falls back to renames).

    Raises:
        OSError: the exchange itself failed (e.g. a path does not exist).
    """
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_cwd = -100  # AT_FDCWD: paths relative to the current directory (ours are absolute)
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


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
    path = folder / ".lock"
    try:  # not through a link (it would truncate what it points to), never blocking on a FIFO
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise ImgclustError(f"{path}: is not a regular file (a link, folder or FIFO); imgclust keeps its lock "
                                "there — move it away") from None
        raise
    st = os.fstat(fd)
    # A file with other names (a hard link) is rewritten below for all of them: fine for a lock of
    # ours seen again through a `cp -al` snapshot, not for a file of the user's linked here.
    regular = stat.S_ISREG(st.st_mode)
    foreign = regular and st.st_nlink > 1 and st.st_size > 0 and not os.pread(fd, 64, 0).startswith(b"imgclust (pid ")
    if not regular or foreign:
        os.close(fd)
        raise ImgclustError(f"{path}: is not a file of imgclust's own (a FIFO, a device, or a file with other "
                            "names: a hard link); imgclust keeps its lock there — move it away")
    with open(fd, "a+") as handle:
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


# A cell a spreadsheet may run as a formula (OWASP "CSV injection"): it starts with = + - @ tab or
# CR, after any number of quotes so that escaping stays reversible ("'=x" is escaped too).
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)", re.IGNORECASE)


def neutralise_cell(cell):
    """``cell`` as it is safe to write into a CSV a spreadsheet may open: a text cell starting with
    ``= + - @``, tab or CR (after any leading quotes) gets a ``'`` in front, so Excel, LibreOffice
    and Google Sheets show it as text instead of running it (OWASP's advice for CSV exports).
    Numbers — also text such as ``-0.5`` or ``1e-3`` — and other cells are returned unchanged.
    :func:`restore_cell` undoes it exactly."""
    if isinstance(cell, str) and _FORMULA.match(cell) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def restore_cell(text: str) -> str:
    """The cell :func:`neutralise_cell` was given: one leading ``'`` removed where it escaped a
    formula character (a name such as ``'tis.jpg`` stays as it is)."""
    return text[1:] if _ESCAPED.match(text) else text


def atomic_write_csv(path: Path, header: list[str], rows) -> None:
    """Write a CSV table (``header``, then each row of ``rows``) to ``path`` atomically, each cell
    passed through :func:`neutralise_cell` (read it back with :func:`read_csv`)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([neutralise_cell(c) for c in header])
    writer.writerows([neutralise_cell(c) for c in row] for row in rows)
    atomic_write_text(path, buf.getvalue())


def read_csv(handle, lines: list[int] | None = None) -> list[list[str]]:
    """All rows (header included) of an open CSV file, each cell through :func:`restore_cell`, so a
    file written by :func:`atomic_write_csv` reads back as it was given; ``lines``, when given, is
    filled with each row's last line number (1-based; a row spans lines only with quoted line breaks).

    Raises:
        csv.Error: the text is not CSV.
    """
    reader = csv.reader(handle)
    rows = []
    for row in reader:
        rows.append([restore_cell(c) for c in row])
        if lines is not None:
            lines.append(reader.line_num)
    return rows


def not_a_file(path: Path) -> str | None:
    """None when ``path`` is a regular file (or a link to one), else what it is instead: "missing",
    "is a folder", "is a FIFO, not a regular file", "is a symbolic link that loops", ... (opening a
    FIFO to hash it would wait for a writer forever)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link that loops"
        if exc.errno == errno.ENOENT:
            return "is a broken symbolic link" if os.path.islink(path) else "missing"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
    return f"is a {kind}, not a regular file"

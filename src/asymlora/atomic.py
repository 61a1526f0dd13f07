"""Crash-safe file writes: write to a temporary file in the same folder, fsync, then ``os.replace``.

A reader therefore sees either the old file or the new one, never a torn one. The temporary file is
``.<name>.<host>.<pid>-<random>.tmp`` beside the target, created with the permissions of an ordinary
``open()`` (``0o666`` less the user's umask). A writer killed before its rename leaves that file
behind; the next write of the same target removes it once its process is gone (same host), or after
:data:`STALE_SECONDS` (a writer on another host, or a name from an earlier asymlora).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator

STALE_SECONDS = 24 * 3600
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _temp_name(target: str) -> str:
    return f".{target}.{_HOST}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale(folder: str | os.PathLike, target: str) -> list[Path]:
    """Remove temporary files of ``folder/target`` left by writers that died; returns what was removed."""
    folder = Path(folder)
    ours = re.compile(rf"^\.{re.escape(target)}\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)-[0-9a-f]+\.tmp$")
    legacy = re.compile(rf"^\.{re.escape(target)}\.[A-Za-z0-9_]{{8}}\.tmp$")  # tempfile.mkstemp names
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    now = time.time()
    for entry in entries:
        m = ours.match(entry.name)
        if m is None and not legacy.match(entry.name):
            continue
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS
        except FileNotFoundError:
            continue
        dead = m is not None and m["host"] == _HOST and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"]))
        if dead or old:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
    return removed


def write_temp(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a fresh temporary file beside ``path`` and fsync it; returns the
    temporary path (removed again if ``write`` fails). The caller moves it into place with ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    while True:
        tmp = path.parent / _temp_name(path.name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
            break
        except FileExistsError:
            continue
    os.close(fd)
    try:
        write(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames inside ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then move it over ``path`` atomically."""
    path = Path(path)
    tmp = write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_bytes(data: bytes) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    return write


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, _write_bytes(data))


def write_temp_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`write_temp` of ``data``."""
    return write_temp(path, _write_bytes(data))


def json_bytes(obj: Any, *, compact: bool = False) -> bytes:
    """``obj`` as JSON text (sorted keys; indented, or on one line without spaces when ``compact``)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":")) if compact else json.dumps(obj, indent=2, sort_keys=True)
    return (text + "\n").encode()


def atomic_write_json(path: str | os.PathLike, obj: Any, *, compact: bool = False) -> Path:
    """Write ``obj`` as JSON (sorted keys; indented, or on one line without spaces when ``compact``)."""
    return atomic_write_bytes(path, json_bytes(obj, compact=compact))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock on the file ``path`` (created if need be) for the duration of the ``with`` block, so
    that several processes (ranks of one job, parallel jobs) do one thing once and the others wait. Without
    ``fcntl`` (Windows) there is no lock; writes that go through this module stay atomic."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

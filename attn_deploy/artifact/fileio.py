"""Atomic file writes: readers never see a half-written artefact."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from attn_deploy.errors import InputError


def _mode_for(final: Path) -> int:
    """The mode ``final`` should end up with: the existing file's, else what ``open()`` gives under the umask."""
    try:
        return final.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block ends, then deliver them: the block runs whole.

    For the few renames that publish an output pair. Python runs signal handlers in the main
    thread only, so elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    held = [s for s, handler in previous.items() if handler is not None]  # None: a handler set outside Python
    for s in held:
        signal.signal(s, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for s in held:
            signal.signal(s, previous[s])
        for signum in pending:
            signal.raise_signal(signum)


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``paths``; if the block succeeds, rename each onto its
    path in the order given (SIGTERM and SIGINT held meanwhile), else remove them all.

    Name a pair's primary file (the model, the engine) last: a reader that checks the sha256 a
    manifest records then never takes a new manifest for the old model's. The results have the
    mode a plain write would give them (``mkstemp``'s 0600 would not be).
    """
    finals = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        # Held while each file is created and recorded: a SIGTERM between the two would leave one
        # that the clean-up below does not know (the kill test caught one in CI).
        with deferred_signals():
            for final in finals:
                try:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
                except OSError as e:
                    raise InputError(f"cannot write {final}: {e.strerror or e}; pick another output path") from None
                temps.append(Path(tmp_name))
                os.close(fd)
        yield list(temps)
        with deferred_signals():
            for tmp, final in zip(temps, finals, strict=True):
                os.chmod(tmp, _mode_for(final))
                os.replace(tmp, final)
    finally:
        with deferred_signals():
            for tmp in temps:
                tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` as an output (``.NAME.lock`` beside it, removed after).

    Two processes writing one output pair (a model and its manifest) take turns, so the pair on disk
    is always one run's. The lock file is re-checked after locking: a holder may have removed it
    (and another process created a new one) while this one waited.
    """
    final = Path(path)
    lock = final.with_name(f".{final.name}.lock")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot write {final}: {e.strerror or e}; pick another output path") from None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise InputError(f"cannot write {final}: {e.strerror or e}; pick another output path") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (``is a directory``, ``no such file`` ...), None when it can."""
    if path.is_dir():
        return "is a directory"
    if path.is_symlink() and not path.exists():
        return "is a broken symbolic link or a symbolic link loop"
    if not path.exists():
        return ": no such file"
    if not path.is_file():
        return "is not a regular file (a pipe or a device?)"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def scratch_beside(output: str | os.PathLike[str]) -> Iterator[Path]:
    """Send the block's temporary files (``tempfile``'s, third-party code's included) to a private
    folder beside ``output``, removed after.

    A process killed outright (SIGKILL) cannot clean up: this way it leaves nothing in $TMPDIR, and
    the folder it leaves beside ``output`` (named with its pid) is removed by the next run writing there.
    """
    final = Path(output)
    prefix = f".{final.name}.scratch-"
    for stale in final.parent.glob(prefix + "*") if final.parent.is_dir() else ():
        pid = stale.name.removeprefix(prefix)
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = final.parent / f"{prefix}{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot write {final}: {e.strerror or e}; pick another output path") from None
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


def ensure_writable(path: Path, option: str) -> None:
    """``InputError`` unless ``path`` is a file name whose folder exists or can be made, writably."""
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory; name a file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {folder} is not a folder this process can write to; pick another path")


def replace_folder(tmp: Path, folder: Path) -> None:
    """Rename the finished folder ``tmp`` onto ``folder``; an existing ``folder`` is moved aside first and removed after."""
    old = None
    with deferred_signals():  # between the two renames ``folder`` is missing: not a moment to stop
        try:
            if folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
                os.replace(folder, old / folder.name)
            os.replace(tmp, folder)
        except OSError:
            if old is not None and not folder.exists():
                os.replace(old / folder.name, folder)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(folder: Path, what: str) -> Iterator[Path]:
    """Yield a new empty folder beside ``folder``; when the block succeeds it replaces ``folder`` whole.

    ``folder`` is the whole new result or untouched; an ``OSError`` becomes an ``InputError`` naming ``what``.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        with deferred_signals():  # created and known to the clean-up below, with no gap between
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        yield tmp
        tmp.chmod(0o755)
        replace_folder(tmp, folder)
    except OSError as e:
        raise InputError(f"cannot write {what} {folder}: {e.strerror or e}; pick another folder") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

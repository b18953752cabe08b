"""Crash-safe writes: a file or directory is either the old one or the complete new one.

Everything is written to a temporary name beside its destination, fsynced, then renamed into
place (one rename on one file system is atomic). Files get the permissions a plain `open()`
would give them (0666 minus the umask): safetensors and some savers create files 0600, which
the group on a shared cluster then cannot read.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

from accel.core.errors import UserError


class TargetExistsError(UserError, FileExistsError):
    """The destination exists and holds something that must not be replaced."""


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so a rename inside it survives a crash (best effort where unsupported)."""
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_modes(path: str | Path) -> None:
    """Give `path` (a file, or a tree) the modes a plain open()/mkdir() would: 0666/0777 minus the umask."""
    mask, p = _umask(), Path(path)
    if p.is_file():
        os.chmod(p, 0o666 & ~mask)
        return
    for root, dirs, files in os.walk(p):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            f = os.path.join(root, name)
            if not os.path.islink(f):
                os.chmod(f, (os.stat(f).st_mode & 0o111 | 0o666) & ~mask)


def fsync_tree(path: str | Path) -> None:
    """fsync every file and directory below `path`."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


def _tmp_name(path: Path, tag: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:6]}")


def write_atomic(path: str | Path, data: str | bytes, executable: bool = False) -> Path:
    """Write `data` to `path` via a fsynced temp file and a rename; a reader never sees half a file."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if executable:
            os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent if str(path.parent) else ".")
    return path


def save_tensors(tensors: dict, path: str | Path, metadata: dict | None = None) -> Path:
    """safetensors `save_file`, written atomically and group-readable like any other file."""
    from safetensors.torch import save_file
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        default_modes(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


@contextlib.contextmanager
def atomic_dir(out: str | Path, may_replace: Callable[[Path], bool] | None = None,
               refuse: str = "") -> Iterator[Path]:
    """Yield a fresh temp directory beside `out`; on success it replaces `out` in one rename.

    `may_replace(out)` decides whether an existing `out` may be replaced (default: only an
    empty directory); otherwise `refuse` is raised as the message of a FileExistsError before
    anything is written (a TargetExistsError). On any exception the temp directory is removed and `out` is untouched.
    """
    out = Path(out).expanduser().absolute()
    if out.exists():
        ok = may_replace(out) if may_replace else (out.is_dir() and not any(out.iterdir()))
        if not ok:
            raise TargetExistsError(refuse or f"{out} exists; choose another path or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(out)
    tmp.mkdir()
    old = None
    try:
        yield tmp
        default_modes(tmp)
        fsync_tree(tmp)
        if out.exists():
            old = _tmp_name(out, "old")
            out.rename(old)
        tmp.rename(out)
        fsync_dir(out.parent)
    except BaseException:  # Ctrl-C or a full disk: the previous `out` must be back in place
        if not tmp.exists() and old is not None:
            shutil.rmtree(old, ignore_errors=True)  # the new one was already renamed in
        else:
            if old is not None and not out.exists():
                old.rename(out)
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

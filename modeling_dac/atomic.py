"""Atomic writes of files and folders: a crash or an error never leaves a half-written output, and an old one
survives."""

import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_write_path", "replace_directory", "write_folder_atomically"]


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike) -> Iterator[Path]:
    """
    Yield a temporary path beside `path` (same directory, named `.<name>.<random>.tmp`, so a leftover from a
    killed process never looks like an output; pass the format explicitly to writers). Write it completely inside
    the `with` block; on success it is fsynced and renamed over `path`, on any error it is removed. A new file
    gets the usual umask-derived permissions; a replaced one keeps its own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
    try:
        yield temporary
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if path.exists():
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def replace_directory(temporary: Path, target: Path):
    """Rename the complete folder `temporary` to `target`, replacing any folder there."""
    # At every moment either `target` or `.previous-<target>` is a complete folder.
    previous = target.with_name(f".previous-{target.name}")
    if previous.exists() and not target.exists():
        os.replace(previous, target)  # an earlier call was killed between its two renames: previous is the copy
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        os.replace(target, previous)
    os.replace(temporary, target)
    shutil.rmtree(previous, ignore_errors=True)


def write_folder_atomically(target: str | Path, write: Callable[[Path], None]) -> Path:
    """
    `write(staging)` fills `.incomplete-<name>` beside `target`, which then takes `target`'s place: a crash or an
    error during the write leaves an earlier `target` as it was (and an error removes the staging folder).
    Returns `target`.
    """
    target = Path(os.path.abspath(target))  # "." and "out/" have a name to stage beside
    if Path.cwd().resolve().is_relative_to(target.resolve()):
        raise ValueError(
            f"{target} is the current directory or holds it, which cannot be replaced; name another directory."
        )
    staging = target.with_name(f".incomplete-{target.name}")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed call left
    try:
        write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_directory(staging, target)
    return target

"""Atomic output that never lands over an input: files and folders.

Every file the tool writes goes to a temporary name in the destination folder first and is
renamed into place only when complete (:func:`atomic_path`, :func:`atomic_write`); a folder
(an adapter bundle, a simulated dataset, a sample subject) is built under a hidden temporary
name and renamed into place whole (:func:`atomic_dir`). Either way a crash, a Stop or a full
disk never leaves a partial result under the final name, and what is finished gets the usual
modes (0o666 / 0o777 minus the umask), not the private modes of temporary files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from napari_petite.errors import OutputError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_destination(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
) -> Path:
    """Return ``path`` as a Path after refusing inputs, existing files and unwritable folders."""
    dest = Path(path).expanduser()
    for src in inputs:
        if src is None:
            continue
        src = Path(src).expanduser()
        if dest.resolve() == src.resolve() or _same_file(dest, src):
            raise OutputError(
                f"Refusing to write {dest}: it is the input file it was read from. "
                "Choose another file name so the original stays untouched."
            )
    if dest.exists() and dest.is_dir():
        raise OutputError(f"Cannot write {dest}: a folder of that name exists. Choose a file name.")
    if dest.exists() and not overwrite:
        raise OutputError(
            f"{dest} already exists; choose another name or allow overwriting "
            "(--overwrite on the command line)."
        )
    # check without creating anything: a refused run must leave no trace, not even a folder
    parent = dest.parent if str(dest.parent) else Path(".")
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"Cannot write into {parent}: {existing} is a file, not a folder. "
                          "Choose another output location.")
    if not _can_create_in(existing):
        raise OutputError(f"The folder {existing} is not writable; choose another output "
                          "location.")
    return dest


def _can_create_in(folder: Path) -> bool:
    """Create (and at once remove) a nameless file: permission bits say nothing for root, on
    read-only mounts or immutable folders, and a run should fail before it computes."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def _umask() -> int:
    """The process umask, read once at import from the main thread: ``os.umask`` can only be
    read by setting it, and doing that later, from a worker thread, races with other threads
    creating files.

    ``mkstemp`` creates its file 0o600 and ``mkdtemp`` its folder 0o700; renamed as they are,
    every export, adapter, checkpoint and dataset would be unreadable to colleagues sharing
    the results folder, so finished ones get the modes ``open()`` and ``mkdir`` would give.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()
#: the mode ``open()`` gives a new file (0o666 minus the umask)
FILE_MODE = 0o666 & ~_UMASK
#: the mode ``mkdir`` gives a new folder (0o777 minus the umask)
DIR_MODE = 0o777 & ~_UMASK


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only on success.

    ``suffix`` keeps the extension writers rely on (nibabel picks gzip from ``.nii.gz``).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"Cannot create the folder {dest.parent} ({err.strerror}); choose a "
                          "writable location.") from None
    if suffix is None:
        suffix = "".join(dest.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".partial{suffix}",
                                    dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, dest)
    except OSError as err:
        raise OutputError(
            f"Could not write {dest}: {err.strerror or err}. Nothing was written under that "
            "name; free some space or choose another location."
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(
    path: str | os.PathLike,
    writer: Callable[[Path], None],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
) -> Path:
    """Check ``path`` and run ``writer(tmp_path)``, then rename ``tmp_path`` onto ``path``."""
    dest = check_destination(path, inputs=inputs, overwrite=overwrite)
    with atomic_path(dest) as tmp:
        writer(tmp)
    return dest


def write_text(path: str | os.PathLike, text: str, **kwargs) -> Path:
    """Atomically write UTF-8 text (JSON sidecars, reports)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), **kwargs)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``dest``; rename it onto ``dest`` only when the
    block succeeds, so a crash, a Stop or a full disk never leaves half a folder under the
    final name. Everything in the finished folder gets :data:`DIR_MODE` / :data:`FILE_MODE`,
    whichever library wrote it; an existing ``dest`` is refused
    unless ``overwrite``, and then moved aside first and removed only once the new folder is
    in place (restored if the rename fails)."""
    import shutil

    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest} exists and is not a folder; choose a folder name.")
    if dest.exists() and not overwrite:
        raise OutputError(f"{dest} already exists; choose another folder or allow "
                          "overwriting (--overwrite on the command line).")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    except OSError as err:
        raise OutputError(f"Cannot write into {dest.parent} ({err.strerror}); choose a writable "
                          "location.") from None
    try:
        yield tmp
        for path in (tmp, *tmp.rglob("*")):  # writers differ (safetensors makes 0o600 files)
            if not path.is_symlink():
                os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / dest.name)
        try:
            os.replace(tmp, dest)
        except OSError:
            if old is not None:
                os.replace(old / dest.name, dest)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        raise OutputError(f"Could not write {dest}: {err.strerror or err}. Nothing was left "
                          "under that name; free some space or choose another location.") \
            from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def discard_dir(folder: str | os.PathLike, *, within: str | os.PathLike) -> bool:
    """Remove ``folder`` (a folder this tool wrote, e.g. a run that left nothing to resume),
    but only when it lies inside ``within`` and is not a symbolic link; True when removed.
    Every deletion of the tool goes through this module."""
    import shutil

    folder, within = Path(folder), Path(within).resolve()
    if folder.is_symlink() or not folder.is_dir():
        return False
    resolved = folder.resolve()
    if resolved == within or within not in resolved.parents:
        return False
    shutil.rmtree(resolved, ignore_errors=True)
    return not resolved.exists()

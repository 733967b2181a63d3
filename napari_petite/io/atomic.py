"""Atomic output that never lands over an input and never deletes another run's result.

Every file the tool writes goes to a temporary name beside its destination and is renamed into
place only when complete (:func:`atomic_path`, :func:`atomic_write`); a folder (an adapter
bundle, a simulated dataset, a DICOM series) is built under a hidden temporary name and renamed
into place whole (:func:`atomic_dir`). A crash, a Stop or a full disk never leaves a partial
result under the final name, and what is finished gets the usual modes (0o666 / 0o777 minus
the umask), not the private modes of temporary files.

The rules every writer follows, checked here and nowhere else (``docs/safety.md``):

- **Outputs never touch inputs.** :func:`check_not_input` refuses a destination that *is*,
  *contains* or *lies inside* any input of the command (dataset, base checkpoint, adapter,
  resume folder, input volumes), through symbolic links.
- **Only the tool's own outputs are replaced.** ``overwrite`` replaces a folder only when it
  carries the marker this module writes into every folder it finishes (:data:`MARKER`), or is
  an adapter bundle / simulated dataset from before the marker; anything else is refused.
- **One writer wins, nobody loses.** :func:`reserve` takes an exclusive lock on a destination
  when a command starts (released when it ends, also by a kill: the kernel drops ``flock``
  locks of dead processes), so a second run on the same ``--out`` is refused at once; at the
  end, a destination that appeared or changed meanwhile is never deleted: the new result is
  kept under a free sibling name and the user is told.
- **Every fault is a sentence**: ``OSError`` and the safetensors writer's own errors become an
  :class:`~napari_petite.errors.OutputError`; temporary files and folders go on failure, and
  ones left by a killed run are removed (or an interrupted replacement restored) the next time
  the same destination is reserved.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from napari_petite.errors import OutputError, PetiteWarning

#: the file that marks a folder as written by this tool (JSON: tool, version, kind; no
#: time, so the same inputs still give byte-identical outputs)
MARKER = ".petite-output.json"
#: kinds of output that are data (a dataset, a subject), not results
DATA_KINDS = ("dataset", "subject")
#: free space kept in reserve beyond a write's own estimate (file-system metadata, logs)
SPACE_MARGIN = 16 << 20


# -- the one overlap check -------------------------------------------------------------------
def real_path(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded and every symbolic link resolved (existing or not)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(inner: Path, outer: Path) -> bool:
    return inner != outer and outer in inner.parents


def check_not_input(dest: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse ``dest`` when it is, contains or lies inside one of ``inputs`` (through links).

    The one check every writer goes through before any work: an output folder replaced as a
    whole must not hold the dataset it was computed from, and an output inside an input
    folder (an adapter inside the dataset) would change that input.
    """
    target = real_path(dest)
    for src in inputs:
        if src is None:
            continue
        real = real_path(src)
        if target == real or _same_file(Path(dest).expanduser(), Path(src).expanduser()):
            raise OutputError(f"Refusing to write {dest}: it is an input of this command "
                              f"({src}), which must stay untouched; choose another output "
                              "name.")
        if _inside(real, target):
            raise OutputError(f"Refusing to write {dest}: it contains an input of this "
                              f"command ({src}), which replacing it would delete; choose "
                              "another output folder.")
        if real.is_dir() and _inside(target, real):
            raise OutputError(f"Refusing to write {dest}: it lies inside an input of this "
                              f"command ({src}), which must stay as it is; choose an output "
                              "folder outside it.")


# -- what counts as the tool's own output ----------------------------------------------------
def _json_object(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")[:1_000_000])
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def output_kind(path: str | os.PathLike) -> str | None:
    """What this tool wrote at ``path`` (the marker's kind: "adapter bundle", "dataset",
    "subject", "DICOM series", ...), or None for a folder it did not write. Adapter bundles
    and simulated datasets from before the marker existed are recognised by their cards."""
    folder = Path(path)
    if not folder.is_dir() or folder.is_symlink():
        return None
    marker = _json_object(folder / MARKER)
    if marker is not None and marker.get("written_by") == "napari-petite":
        return str(marker.get("kind") or "output")
    card = _json_object(folder / "adapter.json")
    if card and card.get("format") == "napari-petite-adapter":
        return "adapter bundle"
    made = _json_object(folder / "dataset.json")
    if made and str(made.get("generator", "")).startswith("napari-petite"):
        return "dataset"
    return "DICOM series" if _derived_series(folder) else None


def _derived_series(folder: Path) -> bool:
    """A DICOM series this tool exported (it names itself in SoftwareVersions; DICOM
    folders carry no marker file, which PACS tools would take for an instance)."""
    first = next(iter(sorted(folder.glob("*.dcm"))), None)
    if first is None:
        return False
    try:
        from pydicom import dcmread

        software = dcmread(first, stop_before_pixels=True).get("SoftwareVersions", "")
    except Exception:  # not DICOM, or unreadable: not ours
        return False
    return "napari-petite" in str(software)


def is_tool_output(path: str | os.PathLike) -> bool:
    """True for a folder this tool wrote (see :func:`output_kind`)."""
    return output_kind(path) is not None


def mark_output(folder: str | os.PathLike, kind: str) -> None:
    """Mark ``folder`` as written by this tool (a work folder filled piece by piece; folders
    finished by :func:`atomic_dir` are marked there), so ``--overwrite`` may replace it."""
    from napari_petite import __version__

    folder = Path(folder)
    doc = {"written_by": "napari-petite", "version": __version__, "kind": kind}
    (folder / MARKER).write_text(json.dumps(doc) + "\n", encoding="utf-8")


# -- checks before any work ------------------------------------------------------------------
def _existing_parent(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _can_create_in(folder: Path) -> bool:
    """Create (and at once remove) a nameless file: permission bits say nothing for root, on
    read-only mounts or immutable folders, and a run should fail before it computes."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def check_space(folder: Path, needed: int, what: str) -> None:
    """Refuse when ``folder``'s file system has less than ``needed`` bytes (+ a margin) free."""
    if needed <= 0:
        return
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed + SPACE_MARGIN:
        from napari_petite.io.memory import human_size

        raise OutputError(f"{what} needs about {human_size(needed)} but only "
                          f"{human_size(free)} is free on the disk holding {folder}; free some "
                          "space or choose another location.")


def _check_location(dest: Path, what: str, needed: int) -> None:
    existing = _existing_parent(dest)
    if not existing.is_dir():
        raise OutputError(f"Cannot write {what} {dest}: {existing} is a file, not a folder. "
                          "Choose another output location.")
    if not _can_create_in(existing):
        raise OutputError(f"The folder {existing} is not writable; choose another output "
                          "location.")
    check_space(existing, needed, f"Writing {dest.name}")


def check_destination(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    needed: int = 0,
) -> Path:
    """Return ``path`` as a Path after refusing inputs, existing files (unless ``overwrite``),
    folders, unwritable places and a disk without room for ``needed`` bytes."""
    dest = Path(path).expanduser()
    check_not_input(dest, inputs)
    if dest.is_dir():
        raise OutputError(f"Cannot write {dest}: a folder of that name exists. Choose a file name.")
    if dest.exists() and not overwrite:
        raise OutputError(
            f"{dest} already exists; choose another name or allow overwriting "
            "(--overwrite on the command line)."
        )
    # check without creating anything: a refused run must leave no trace, not even a folder
    _check_location(dest, "into", needed)
    return dest


def check_folder_destination(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    needed: int = 0,
    allow_empty: bool = True,
) -> Path:
    """Like :func:`check_destination` for a folder replaced as a whole: an existing folder is
    refused unless it is empty (``allow_empty``) or ``overwrite`` is given *and* it is one of
    this tool's outputs (:func:`is_tool_output`)."""
    dest = Path(path).expanduser()
    check_not_input(dest, inputs)
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest} exists and is not a folder; choose a folder name.")
    if dest.is_dir() and not (allow_empty and _is_empty(dest)):
        if not overwrite:
            raise OutputError(f"{dest} already exists; choose another folder or allow "
                              "overwriting (--overwrite on the command line).")
        if not is_tool_output(dest):
            raise OutputError(f"{dest} exists and was not written by napari-petite, so "
                              "--overwrite will not replace it (it may hold your own files); "
                              "choose another folder.")
    _check_location(dest, "into", needed)
    return dest


def _is_empty(folder: Path) -> bool:
    try:
        return not any(folder.iterdir())
    except OSError:
        return False


# -- reservations ----------------------------------------------------------------------------
def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Reservation:
    """An exclusive claim on one destination for the length of a command.

    Made by :func:`reserve`; the writers (:func:`atomic_dir`, :func:`atomic_write`) finish
    through it, so a destination that appeared or was replaced by someone else meanwhile is
    never deleted. A writer asking again for a destination its own thread holds gets the
    same claim (a command reserves ``--out`` when it starts; the writer it calls at the end
    finishes through that claim).
    """

    def __init__(self, dest: Path, *, overwrite: bool, kind: str):
        self.dest = dest
        self.overwrite = overwrite
        self.kind = kind  # "file" | "folder" | "workdir" (written into piece by piece)
        self.identity = _identity(dest)
        self.notes: list[str] = []
        self._fd: int | None = None
        self._created: list[Path] = []
        self._thread = threading.get_ident()

    # the lock file lives beside the destination, hidden, and goes when the claim ends
    @property
    def lock_path(self) -> Path:
        return self.dest.parent / f".{self.dest.name}.petite-lock"

    def _acquire(self, what: str) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: an exclusive create is the lock (no stale detection)
            fcntl = None
        lock = self.lock_path
        for _ in range(20):
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o644)
            except FileExistsError:
                raise OutputError(self._busy(what)) from None
            except OSError as err:
                raise OutputError(f"Cannot reserve {self.dest} ({err.strerror}); choose a "
                                  "writable location.") from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise OutputError(self._busy(what)) from None
                if _identity(lock) != (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
                    os.close(fd)  # the holder removed it just before we locked: again
                    continue
            info = json.dumps({"pid": os.getpid(), "since": _dt.datetime.now().isoformat(
                timespec="seconds")}).encode()
            os.ftruncate(fd, 0)
            os.write(fd, info)
            self._fd = fd
            return
        raise OutputError(self._busy(what))

    def _busy(self, what: str) -> str:
        holder = _json_object(self.lock_path) or {}
        who = (f" (process {holder.get('pid')}, since {holder.get('since')})"
               if holder.get("pid") else "")
        return (f"{self.dest} is being written by another napari-petite run{who}; wait for "
                f"it to finish or choose another {what}.")

    def _clean_leftovers(self) -> None:
        """Remove what a killed run left for this destination; restore an interrupted
        replacement (the old output moved aside, the new one not yet in place)."""
        parent, name = self.dest.parent, self.dest.name
        if not parent.is_dir():
            return
        pattern = re.compile(
            rf"^\.{re.escape(name)}\.(?:(partial-|old-)\w{{8}}|\w{{8}}\.partial.*)$")
        for entry in sorted(parent.iterdir()):
            match = pattern.match(entry.name)
            if match is None:
                continue
            if match.group(1) == "old-":
                moved = entry / name
                if moved.exists() and not self.dest.exists():
                    os.replace(moved, self.dest)
                    self.identity = _identity(self.dest)
                    self.notes.append(f"restored {self.dest} from an interrupted replacement")
            else:
                self.notes.append(f"removed {entry.name}, left in {parent} by an interrupted "
                                  "run")
            _remove(entry)
        if self.kind == "workdir" and self.dest.is_dir():
            for entry in self.dest.rglob(".*.partial*"):
                _remove(entry)
                self.notes.append(f"removed {entry}, left by an interrupted run")

    def _make_parents(self) -> None:
        missing = []
        parent = self.dest.parent
        while not parent.exists() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                raise OutputError(f"Cannot create the folder {folder} ({err.strerror}); choose "
                                  "a writable location.") from None
            self._created.append(folder)

    def release(self, *, success: bool) -> None:
        """End the claim: drop the lock; after a failure remove the folders made for it
        (when still empty) and, for a work folder this run created, the folder if empty."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            os.close(self._fd)
            self._fd = None
        if success:
            return
        if self.kind == "workdir" and self.identity is None and self.dest.is_dir() \
                and _is_empty(self.dest):
            with contextlib.suppress(OSError):
                self.dest.rmdir()
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()

    # -- finishing --------------------------------------------------------------------------
    def unchanged(self) -> bool:
        """The destination is as it was when reserved (absent, or the same file/folder)."""
        return _identity(self.dest) == self.identity

    def may_replace(self) -> bool:
        """Whether finishing may replace what is at the destination now."""
        if self.identity is None:
            return not self.dest.exists() and not self.dest.is_symlink()
        return self.overwrite and self.unchanged()


def reserve(
    dest: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    kind: str = "folder",
    needed: int = 0,
    what: str = "--out",
) -> contextlib.AbstractContextManager[Reservation]:
    """Check ``dest`` (see :func:`check_destination` / :func:`check_folder_destination`) and
    claim it for the length of the ``with`` block.

    ``kind``: ``"file"``, ``"folder"`` (replaced whole at the end) or ``"workdir"`` (a folder
    written into piece by piece, e.g. a resume folder or a sweep's rows; it may already exist
    and is never replaced). On leaving the block through an exception, folders created for
    the claim are removed again when empty. Asked again in the same thread for a
    destination it holds, it yields the held claim (checked against the new ``inputs``).
    """
    return _reserve(Path(dest).expanduser(), tuple(inputs), overwrite, kind, needed, what)


_HELD = threading.local()


def _held() -> dict[Path, Reservation]:
    if not hasattr(_HELD, "claims"):
        _HELD.claims = {}
    return _HELD.claims


@contextlib.contextmanager
def _reserve(dest: Path, inputs: tuple, overwrite: bool, kind: str, needed: int,
             what: str) -> Iterator[Reservation]:
    key = real_path(dest)
    if key in _held():
        check_not_input(dest, inputs)
        yield _held()[key]
        return
    if kind == "file":
        check_destination(dest, inputs=inputs, overwrite=overwrite, needed=needed)
    elif kind == "folder":
        check_folder_destination(dest, inputs=inputs, overwrite=overwrite, needed=needed)
    elif kind == "workdir":
        check_not_input(dest, inputs)
        if dest.exists() and not dest.is_dir():
            raise OutputError(f"{dest} exists and is not a folder; choose a folder name.")
        _check_location(dest, "into", needed)
    else:
        raise ValueError(f"unknown reservation kind {kind!r}")
    res = Reservation(dest, overwrite=overwrite, kind=kind)
    res._make_parents()
    try:
        res._acquire(what)
        res._clean_leftovers()
    except BaseException:
        res.release(success=False)
        raise
    for note in res.notes:
        warnings.warn(note, PetiteWarning, stacklevel=3)
    _held()[key] = res
    ok = False
    try:
        yield res
        ok = True
    finally:
        del _held()[key]
        res.release(success=ok)


# -- modes -----------------------------------------------------------------------------------
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


# -- faults ----------------------------------------------------------------------------------
def is_write_fault(err: BaseException) -> bool:
    """An error that means "the disk refused" (full, read-only, permissions, quota): an
    ``OSError`` or the safetensors writer's own error type, which wraps the same causes."""
    return isinstance(err, OSError) or type(err).__name__ == "SafetensorError"


def _fault(dest: Path, err: BaseException) -> OutputError:
    reason = getattr(err, "strerror", None) or " ".join(str(err).split()) or type(err).__name__
    return OutputError(f"Could not write {dest}: {reason}. Nothing was written under that "
                       "name; free some space or choose another location.")


def _remove(path: Path) -> None:
    """Delete a temporary file or folder of this module (nothing else is ever deleted)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            path.unlink()


def remove_temporary(path: str | os.PathLike) -> None:
    """Remove a temporary file made with :func:`temporary_file` (for writers that hand a
    temporary path to a library and must clean up themselves)."""
    path = Path(path)
    if ".partial" not in path.name:
        raise ValueError(f"{path} is not a temporary file of napari-petite")
    _remove(path)


def _free_sibling(dest: Path) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        candidate = dest.with_name(f"{dest.name}.{stamp}" + (f"-{k}" if k else ""))
        if not candidate.exists():
            return candidate
    raise OutputError(f"No free name beside {dest}; tidy the folder and run again.")


def _conflict(dest: Path, tmp: Path) -> OutputError:
    """The destination appeared or changed while this run worked: keep both."""
    kept = _free_sibling(dest)
    os.replace(tmp, kept)
    return OutputError(f"{dest} was created or replaced by someone else while this run "
                       f"worked, so it was left as it is; this run's result is in {kept}.")


def _place_file(tmp: Path, dest: Path, may_replace: bool) -> None:
    """Rename ``tmp`` onto ``dest``; without ``may_replace`` never over an existing entry
    (a hard link fails if the name exists, so checking and placing are one step)."""
    if may_replace:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise _conflict(dest, tmp) from None
    except OSError:  # no hard links on this file system: check, then rename
        if dest.exists() or dest.is_symlink():
            raise _conflict(dest, tmp) from None
        os.replace(tmp, dest)
        return
    tmp.unlink()


# -- files -----------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None, *,
                replace: bool | Callable[[], bool] = True) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only on success.

    ``suffix`` keeps the extension writers rely on (nibabel picks gzip from ``.nii.gz``).
    ``replace=False`` (or a callable answering False when the write finishes) never replaces
    an entry that exists by then. Use it
    directly only for files the caller owns (its own reserved folder); other writers go
    through :func:`atomic_write`.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"Cannot create the folder {dest.parent} ({err.strerror}); choose a "
                          "writable location.") from None
    if suffix is None:
        suffix = "".join(dest.suffixes) or ".tmp"
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".partial{suffix}",
                                        dir=dest.parent)
    except OSError as err:
        raise _fault(dest, err) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
            os.chmod(tmp, FILE_MODE)
            _place_file(tmp, dest, replace() if callable(replace) else replace)
        except OutputError:
            raise
        except Exception as err:
            if is_write_fault(err):
                raise _fault(dest, err) from None
            raise
    finally:
        _remove(tmp)


def atomic_write(
    path: str | os.PathLike,
    writer: Callable[[Path], None],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    needed: int = 0,
) -> Path:
    """Check ``path`` and run ``writer(tmp_path)``, then rename ``tmp_path`` onto ``path``
    (only when it is still as it was when reserved, or absent)."""
    dest = Path(path).expanduser()
    with (reserve(dest, inputs=inputs, overwrite=overwrite, kind="file",
                  needed=needed) as res,
          atomic_path(dest, replace=res.may_replace) as tmp):
        writer(tmp)
    return dest


def write_text(path: str | os.PathLike, text: str, **kwargs) -> Path:
    """Atomically write UTF-8 text (JSON sidecars, reports)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), **kwargs)


# -- folders ---------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_dir(
    dest: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    kind: str = "output",
    needed: int = 0,
    mark: bool = True,
) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``dest``; rename it onto ``dest`` only when the
    block succeeds, so a crash, a Stop or a full disk never leaves half a folder under the
    final name.

    The finished folder carries :data:`MARKER` (``kind`` says what it is; ``mark=False`` for
    DICOM series, recognised by their own tags) and the usual modes, whichever library wrote
    its files. An existing ``dest`` is refused unless it is empty, or
    ``overwrite`` is given and it is one of this tool's outputs; then it is moved aside first
    and removed only once the new folder is in place (restored if the rename fails). When
    the command reserved ``dest`` when it started (:func:`reserve`), a ``dest`` that appeared
    or changed since is never replaced.
    """
    dest = Path(dest).expanduser()
    with reserve(dest, inputs=inputs, overwrite=overwrite, kind="folder", needed=needed) as res:
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        except OSError as err:
            raise OutputError(f"Cannot write into {dest.parent} ({err.strerror}); choose a "
                              "writable location.") from None
        try:
            yield tmp
            if mark:
                mark_output(tmp, kind)
            for path in (tmp, *tmp.rglob("*")):  # writers differ (safetensors: 0o600 files)
                if not path.is_symlink():
                    os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)
            _place_folder(tmp, dest, res)
        except OutputError:
            raise
        except Exception as err:
            if is_write_fault(err):
                raise OutputError(f"Could not write {dest}: {getattr(err, 'strerror', None) or err}"
                                  ". Nothing was left under that name; free some space or "
                                  "choose another location.") from None
            raise
        finally:
            if tmp.exists():
                _remove(tmp)


def _place_folder(tmp: Path, dest: Path, res: Reservation) -> None:
    if not (dest.exists() or dest.is_symlink()):
        try:
            os.rename(tmp, dest)
        except OSError:
            if dest.exists():
                raise _conflict(dest, tmp) from None
            raise
        return
    if dest.is_dir() and not dest.is_symlink() and _is_empty(dest) and res.unchanged():
        os.rename(tmp, dest)  # an empty folder is replaced by the rename itself
        return
    if not (res.may_replace() and dest.is_dir() and is_tool_output(dest)):
        raise _conflict(dest, tmp)
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.replace(dest, old / dest.name)
    try:
        os.replace(tmp, dest)
    except OSError:
        os.replace(old / dest.name, dest)
        raise
    _remove(old)


def remove_if_empty(folder: str | os.PathLike) -> None:
    """Remove ``folder`` when it holds nothing (a work folder a failed run made)."""
    folder = Path(folder)
    if folder.is_dir() and _is_empty(folder):
        with contextlib.suppress(OSError):
            folder.rmdir()


def discard_dir(folder: str | os.PathLike, *, within: str | os.PathLike) -> bool:
    """Remove ``folder`` (a folder this tool wrote, e.g. a run that left nothing to open),
    but only when it lies inside ``within`` and is not a symbolic link; True when removed."""
    folder, within = Path(folder), Path(within).resolve()
    if folder.is_symlink() or not folder.is_dir():
        return False
    resolved = folder.resolve()
    if resolved == within or within not in resolved.parents:
        return False
    _remove(resolved)
    return not resolved.exists()

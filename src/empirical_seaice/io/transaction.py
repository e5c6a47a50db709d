"""Nothing lost, nothing mixed: atomic files, an output set published in one step, a lock per tag.

Three pieces, used by every writer of a run (NetCDF, PyTorch, ONNX, PNG, HTML):

:func:`atomic_path`
    The one atomic-write helper. The writer writes a temporary file beside
    the final name (``.NAME.tmpPID``); on success the file is flushed to disk
    (``fsync``) and renamed into place (:func:`os.replace`); on any failure the
    temporary file is removed. A full or read-only disk becomes a one-line
    :class:`SeaIceError` naming the file and the fix instead of a traceback.
    While :func:`health_marks` is active, every NetCDF file gets the given
    global attributes (``--force-outputs`` marks a failed health check).

:class:`OutputSet`
    One run's output set for a tag. The run writes every file into a
    staging directory ``<output>/.sets/TAG/<run id>/``; :meth:`OutputSet.publish`
    writes ``manifest_TAG.json`` (run id, configuration hash, files with size
    and BLAKE2b checksum) into it and then switches the symbolic link
    ``<output>/.sets/TAG/current`` to it with one :func:`os.replace`. The names
    users read (``<output>/seaice_TAG.nc``, ``plots_TAG``, ...) are symbolic
    links through ``current``, so a reader sees either the old complete set or
    the new complete set, whatever happens (kill -9, full disk, power cut
    after the rename). Unpublished staging directories and temporaries of
    dead processes are removed when the next run of the tag starts.

:class:`OutputLock`
    ``<output>/.lock_TAG``: one run per output directory and tag. The lock
    file names the holder (pid, host, process start time); a lock whose
    process is gone (same host, pid dead or reused) is stale and taken over.

No torch and no model here: :mod:`empirical_seaice.io` stays usable without them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from empirical_seaice.errors import SeaIceError

log = logging.getLogger(__name__)

SETS_DIR = ".sets"
"""Hidden directory of the output sets: ``<output>/.sets/TAG/<run id>/``."""

CURRENT = "current"
"""Symbolic link ``<output>/.sets/TAG/current`` -> the published set of the tag."""

LOCK_PREFIX = ".lock_"
"""Lock file of a tag: ``<output>/.lock_TAG``."""

MANIFEST_STEM = "manifest"
"""``manifest_TAG.json``: the published set's run, configuration hash, files and checksums."""

MANIFEST_FORMAT = 1

FAULT_ENV = "SEAICE_FAULT"
"""Test hook: ``SEAICE_FAULT=POINT[:N]`` kills the process with SIGKILL the N-th time (default 1st)
it reaches POINT (``write``: before an output file is renamed into place; ``publish``: before the
set is switched; ``cache``: before the data cache is renamed into place). Used by the kill tests."""

_fault_counts: dict[str, int] = {}
_health_attrs: ContextVar[dict[str, str] | None] = ContextVar("seaice_health_attrs", default=None)


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL here if :data:`FAULT_ENV` asks for it (tests only)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- atomic files
def tmp_name(path: Path) -> Path:
    """The temporary name of ``path`` for this process: ``.NAME.tmpPID`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk (after a rename); ignored where unsupported."""
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


def _disk_problem(path: Path) -> str | None:
    """'full' / 'read-only' / None for the file system holding ``path``'s directory."""
    d = Path(path).parent
    try:
        st = os.statvfs(d)
    except OSError:
        return None
    if st.f_flag & getattr(os, "ST_RDONLY", 1) or not os.access(d, os.W_OK):
        return "read-only"
    if st.f_bavail * st.f_frsize < 1 << 20:
        return "full"
    return None


class OutputWriteError(SeaIceError):
    """An output file could not be written (full or read-only disk, ...); nothing was published."""


def write_error(path: Path, exc: BaseException) -> SeaIceError:
    """A one-line :class:`SeaIceError` for a failed write of ``path`` (disk full, read-only, ...)."""
    code = getattr(exc, "errno", None)
    problem = _disk_problem(path)
    if code == errno.ENOSPC or code == errno.EDQUOT or problem == "full":
        why = "the disk is full"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM) or problem == "read-only":
        why = "the directory is read-only or not writable"
    else:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        why = f"{type(exc).__name__}: {first[:200]}"
    return OutputWriteError(
        f"{path}: cannot write the file ({why}); free space or choose a writable --output "
        "(the previous outputs are unchanged)"
    )


def _is_write_failure(path: Path, exc: BaseException) -> bool:
    """An OSError always is; a RuntimeError (netCDF 'HDF error', torch 'enforce fail') when the disk is the cause."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, RuntimeError) and _disk_problem(path) is not None


@contextlib.contextmanager
def health_marks(attrs: Mapping[str, str] | None) -> Iterator[None]:
    """While active, :func:`atomic_path` adds ``attrs`` as global attributes to every NetCDF file."""
    token = _health_attrs.set(dict(attrs) if attrs else None)
    try:
        yield
    finally:
        _health_attrs.reset(token)


def _mark_netcdf(path: Path, attrs: Mapping[str, str]) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "a") as ds:
        for k, v in attrs.items():
            ds.setncattr(k, v)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Write ``path`` atomically: yields a temporary path for the writer, then fsync + rename.

    The temporary file ``.NAME.tmpPID`` lies beside ``path``. If the block
    raises, the temporary file is removed and ``path`` is untouched. An
    :class:`OSError` (or a RuntimeError of a library while the disk is full or
    read-only) becomes a one-line :class:`SeaIceError`.
    """
    path = Path(path)
    tmp = tmp_name(path)
    try:
        try:
            yield tmp
            marks = _health_attrs.get()
            if marks and path.suffix == ".nc":
                _mark_netcdf(tmp, marks)
            _fsync_file(tmp)
            fault_point("write")
            os.replace(tmp, path)
        except SeaIceError:
            raise
        except Exception as exc:
            if _is_write_failure(path, exc):
                raise write_error(path, exc) from None
            raise
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()


def make_dir(path: Path, flag: str = "--output") -> Path:
    """``mkdir -p`` with a one-line error for a read-only or full disk."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SeaIceError(f"{flag}: cannot create directory {path} ({exc.strerror}); choose a writable place") from None
    return Path(path)


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """BLAKE2b (128-bit) of a file's bytes, read in chunks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- processes
def _host() -> str:
    return socket.gethostname()


def _proc_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot, Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` (started at ``start``, if given) still runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start is not None:
        now = _proc_start(pid)
        if now is not None and now != start:
            return False
    return True


# ----------------------------------------------------------------------------- lock
class OutputLock:
    """Exclusive lock of ``<output>/.lock_TAG`` (see the module docstring)."""

    def __init__(self, output: Path, tag: str):
        self.output = Path(output)
        self.tag = tag
        self.path = self.output / f"{LOCK_PREFIX}{tag}"
        self.held = False

    def _holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self, argv: Sequence[str] | None = None) -> None:
        """Take the lock; a stale lock (its process is gone) is taken over.

        Raises
        ------
        SeaIceError
            Another live run holds it (or one on another host, which cannot be checked).
        """
        me = {
            "pid": os.getpid(),
            "host": _host(),
            "start": _proc_start(os.getpid()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "argv": list(argv or []),
        }
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(me))
        except OSError as exc:
            raise write_error(self.path, exc) from None
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)  # atomic: fails if a lock exists; the lock is complete when it appears
                    self.held = True
                    return
                except FileExistsError:
                    pass
                holder = self._holder()
                if holder is None:  # vanished meanwhile, or unreadable
                    if self.path.exists() and time.time() - self.path.stat().st_mtime > 60:
                        self._break()
                    continue
                if holder.get("host") == me["host"] and not pid_alive(int(holder.get("pid", -1)), holder.get("start")):
                    log.warning(
                        "removing the stale lock %s of pid %s (no longer running)", self.path, holder.get("pid")
                    )
                    self._break()
                    continue
                where = f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('time')}"
                fix = "wait for it to finish or use another --tag or --output"
                if holder.get("host") != me["host"]:
                    fix += f" (if that run is gone, remove {self.path})"
                raise SeaIceError(f"--output {self.output} --tag {self.tag}: another run ({where}) is using it; {fix}")
            raise SeaIceError(f"--output {self.output} --tag {self.tag}: could not take the lock {self.path}; retry")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _break(self) -> None:
        grave = self.path.with_name(f"{self.path.name}.stale{os.getpid()}")
        with contextlib.suppress(OSError):
            os.rename(self.path, grave)
            grave.unlink()

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if not self.held:
            return
        holder = self._holder()
        if holder is not None and holder.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.held = False


# ----------------------------------------------------------------------------- stale temporaries
def _pid_of_tmp(name: str) -> int | None:
    """The pid in ``.NAME.tmpPID`` (or ``...tmp-PID-...``), None if the name has none."""
    if ".tmp" not in name:
        return None
    tail = name.rsplit(".tmp", 1)[1].lstrip("-")
    digits = tail.split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove ``.NAME.tmpPID`` files and directories of processes that are gone (this host).

    Returns what was removed. Names without a pid are left alone.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if not p.name.startswith(".") or ".tmp" not in p.name:
            continue
        pid = _pid_of_tmp(p.name)
        if pid is None or pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
    if removed:
        log.warning("removed %d stale temporary file(s) of interrupted runs in %s", len(removed), directory)
    return removed


# ----------------------------------------------------------------------------- output set
def config_hash(configs: Mapping[str, Any]) -> str:
    """SHA-256 of a configuration (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(configs, sort_keys=True, default=str).encode()).hexdigest()


def current_set(output: Path, tag: str) -> Path | None:
    """The published set directory of ``tag`` (None if there is none)."""
    link = Path(output) / SETS_DIR / tag / CURRENT
    if not link.is_symlink():
        return None
    target = link.parent / os.readlink(link)
    return target if target.is_dir() else None


def read_manifest(output: Path, tag: str) -> dict[str, Any] | None:
    """The manifest of the published set of ``tag`` (None if there is none)."""
    cur = current_set(output, tag)
    if cur is None:
        return None
    try:
        return json.loads((cur / f"{MANIFEST_STEM}_{tag}.json").read_text())
    except (OSError, ValueError):
        return None


def verify_set(output: Path, tag: str) -> list[str]:
    """Problems of the published set of ``tag`` against its manifest ([] = complete and intact)."""
    manifest = read_manifest(output, tag)
    if manifest is None:
        return [f"no published set for tag {tag!r} in {output}"]
    problems = []
    for name, info in manifest["files"].items():
        p = Path(output) / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif p.stat().st_size != info["bytes"] or file_digest(p) != info["blake2b"]:
            problems.append(f"{name}: checksum differs")
    return problems


class OutputSet:
    """The output set a run builds for one tag and publishes in one step (module docstring).

    Parameters
    ----------
    output : the output directory (``--output``).
    tag : the run tag.
    argv : the command line (lock file and manifest).
    inherit : start the new set from the files of the published one (``--diagsonly`` on the
        same tag: the model files stay, the diagnostics are replaced).
    """

    def __init__(self, output: Path, tag: str, argv: Sequence[str] | None = None, inherit: bool = False):
        self.output = Path(output)
        self.tag = tag
        self.argv = list(argv or [])
        self.inherit = inherit
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.run_id = f"{stamp}-{_host()}-{os.getpid()}-{os.urandom(3).hex()}"  # unique within a process too
        self.lock = OutputLock(self.output, tag)
        self.tag_dir = self.output / SETS_DIR / tag
        self.stage = self.tag_dir / self.run_id
        self.output_created = False
        self.published = False
        self._created_dirs: list[Path] = []

    # ---- begin
    def begin(self) -> Path:
        """Create the output directory if needed, take the lock, remove stale leftovers, create
        the staging directory; returns it (write every output file of the run there)."""
        if self.output.exists() and not self.output.is_dir():
            raise SeaIceError(f"--output: {self.output} exists and is not a directory")
        self.output_created = not self.output.exists()
        make_dir(self.output)
        try:
            self.lock.acquire(self.argv)
        except BaseException:
            self._remove_created_output()
            raise
        try:
            self.clean_stale()
            for d in (self.output / SETS_DIR, self.tag_dir):
                if not d.exists():
                    make_dir(d)
                    self._created_dirs.append(d)
            self.stage.mkdir()  # new: never a published set's directory
            if self.inherit:
                self._inherit()
        except BaseException:
            self.abort()
            raise
        return self.stage

    def _inherit(self) -> None:
        cur = current_set(self.output, self.tag)
        if cur is None:
            return
        for p in cur.iterdir():
            if p.is_file() and not p.name.startswith((".", MANIFEST_STEM)):
                try:
                    os.link(p, self.stage / p.name)
                except OSError:
                    shutil.copy2(p, self.stage / p.name)

    def clean_stale(self) -> None:
        """Remove what interrupted runs of this tag left: unpublished staging sets, temporaries,
        dangling links of this tag (we hold the tag's lock, so none of it is in use)."""
        remove_stale_temporaries(self.output)
        for sub in self.output.glob(f"checkpoints_{self.tag}"):
            remove_stale_temporaries(sub)
        if self.tag_dir.is_dir():
            keep = {CURRENT}
            cur = current_set(self.output, self.tag)
            if cur is not None:
                keep.add(cur.name)
            for p in self.tag_dir.iterdir():
                if p.name not in keep:
                    log.warning("removing %s, left by an interrupted run", p)
                    with contextlib.suppress(OSError):
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    # ---- publish
    def _link_target(self, name: str) -> str:
        return os.path.join(SETS_DIR, self.tag, CURRENT, name)

    def _place_link(self, name: str) -> None:
        """Make ``<output>/name`` the link through ``current`` (atomic per name)."""
        final = self.output / name
        target = self._link_target(name)
        if final.is_symlink() and os.readlink(final) == target:
            return
        if final.is_dir() and not final.is_symlink():  # a directory of an older version: set it aside
            grave = self.tag_dir / f".old-{name}.tmp{os.getpid()}"
            os.rename(final, grave)
        tmp = self.output / f".{name}.link.tmp{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, final)

    def files(self) -> list[str]:
        """Relative paths of every file in the staging set (sorted)."""
        return sorted(str(p.relative_to(self.stage)) for p in self.stage.rglob("*") if p.is_file())

    def publish(
        self, configs: Mapping[str, Any] | None = None, status: str = "complete", message: str = ""
    ) -> dict[str, Any]:
        """Write the manifest into the set and make the set the published one in one rename.

        Returns the manifest.
        """
        manifest = {
            "format": MANIFEST_FORMAT,
            "run": self.run_id,
            "tag": self.tag,
            "status": status,
            "message": message,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": self.argv,
            "config_hash": config_hash(configs or {}),
            "files": {},
        }
        try:
            for rel in self.files():
                p = self.stage / rel
                manifest["files"][rel] = {"bytes": p.stat().st_size, "blake2b": file_digest(p)}
            mpath = self.stage / f"{MANIFEST_STEM}_{self.tag}.json"
            with atomic_path(mpath) as tmp:
                tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
            fsync_dir(self.stage)
            top = sorted(p.name for p in self.stage.iterdir())
            for name in top:  # links for new names dangle until the switch: the old set lacks them
                self._place_link(name)
            fault_point("publish")
            old = current_set(self.output, self.tag)
            link_tmp = self.tag_dir / f".{CURRENT}.tmp{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                link_tmp.unlink()
            os.symlink(self.run_id, link_tmp)
            os.replace(link_tmp, self.tag_dir / CURRENT)  # the one step
            fsync_dir(self.tag_dir)
            fsync_dir(self.output)
        except OSError as exc:
            raise write_error(self.stage, exc) from None
        self.published = True
        self._created_dirs.clear()
        # tidy up: links of names the new set lacks, the old set, set-aside directories
        names = set(top)
        prefix = os.path.join(SETS_DIR, self.tag, CURRENT) + os.sep
        for p in self.output.iterdir():
            if p.is_symlink() and p.name not in names and os.readlink(p).startswith(prefix):
                with contextlib.suppress(OSError):
                    p.unlink()
        if old is not None and old.name != self.run_id:
            shutil.rmtree(old, ignore_errors=True)
        for p in self.tag_dir.glob(".old-*"):
            shutil.rmtree(p, ignore_errors=True)
        return manifest

    # ---- end
    def abort(self) -> None:
        """Forget the unpublished set: remove the staging directory and what :meth:`begin` created."""
        if not self.published:
            shutil.rmtree(self.stage, ignore_errors=True)
            for d in reversed(self._created_dirs):
                with contextlib.suppress(OSError):
                    d.rmdir()
            self._created_dirs.clear()

    def release(self) -> None:
        """Release the lock; remove the output directory if this run created it and left it empty."""
        self.lock.release()
        self._remove_created_output()

    def _remove_created_output(self) -> None:
        if self.output_created:
            with contextlib.suppress(OSError):
                self.output.rmdir()


__all__ = [
    "atomic_path",
    "health_marks",
    "make_dir",
    "file_digest",
    "write_error",
    "OutputWriteError",
    "OutputSet",
    "OutputLock",
    "current_set",
    "read_manifest",
    "verify_set",
    "remove_stale_temporaries",
    "config_hash",
    "fault_point",
    "pid_alive",
    "FAULT_ENV",
]

"""One run per output directory and tag: the lock file ``<output>/.lock_TAG`` (:class:`OutputLock`),
whether the process of a lock or a temporary file still runs, and the removal of the temporary files
of processes that are gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.transaction.atomic import write_error

log = logging.getLogger(__name__)

LOCK_PREFIX = ".lock_"
"""Lock file of a tag: ``<output>/.lock_TAG``."""


def host_name() -> str:
    """The name of this host (in lock files and run ids)."""
    return socket.gethostname()


def process_start(pid: int) -> str | None:
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
        now = process_start(pid)
        if now is not None and now != start:
            return False
    return True


class OutputLock:
    """Exclusive lock of ``<output>/.lock_TAG``: the file names the holder (pid, host, process start
    time); a lock whose process is gone (same host, pid dead or reused) is stale and taken over."""

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
            "host": host_name(),
            "start": process_start(os.getpid()),
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
                    self._break(None)
                    continue
                if holder.get("host") == me["host"] and not pid_alive(int(holder.get("pid", -1)), holder.get("start")):
                    if self._break(holder):
                        log.warning(
                            "removed the stale lock %s of pid %s (no longer running)", self.path, holder.get("pid")
                        )
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

    def _break(self, stale: dict[str, Any] | None) -> bool:
        """Remove the lock if it still is ``stale`` (a holder found gone; None: a lock unreadable for a
        minute), deciding and removing under an ``flock`` of the output directory: of several runs that
        find the same stale lock, one removes it, and none removes the lock another has taken meanwhile
        (they each removed "the" lock before, and two runs could hold it at once). Whether it was removed."""
        try:
            fd = os.open(self.output, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes
            if self._holder() != stale:
                return False
            if stale is None and not (self.path.exists() and time.time() - self.path.stat().st_mtime > 60):
                return False
            self.path.unlink()
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

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
    removed: list[Path] = []
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


__all__ = ["LOCK_PREFIX", "host_name", "process_start", "pid_alive", "OutputLock", "remove_stale_temporaries"]

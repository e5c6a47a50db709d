"""One run's output set for a tag, published in one step: the staging directory
``<output>/.sets/TAG/<run id>/``, the manifest with checksums, the switch of the ``current`` link,
and reading and verifying the published set (:class:`OutputSet`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.transaction.atomic import (
    DIGEST,
    SETS_DIR,
    atomic_path,
    digest_written_files,
    file_digest,
    fsync_dir,
    make_dir,
    write_error,
    written_digest,
)
from empirical_seaice.io.transaction.faults import fault_point
from empirical_seaice.io.transaction.lock import OutputLock, host_name, remove_stale_temporaries

log = logging.getLogger(__name__)

CURRENT = "current"
"""Symbolic link ``<output>/.sets/TAG/current`` -> the published set of the tag."""

MANIFEST_STEM = "manifest"
"""``manifest_TAG.json``: the published set's run, configuration hash, files and checksums."""

MANIFEST_FORMAT = 1


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
        algorithm = DIGEST if DIGEST in info else "blake2b"  # the manifests before 2026-12-02
        p = Path(output) / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif p.stat().st_size != info["bytes"] or file_digest(p, algorithm=algorithm) != info[algorithm]:
            problems.append(f"{name}: checksum differs")
    return problems


class OutputSet:
    """The output set a run builds for one tag and publishes in one step (:mod:`empirical_seaice.io.transaction`).

    Parameters
    ----------
    output : the output directory (``--output``).
    tag : the run tag.
    argv : the command line (lock file and manifest).
    inherit : start the new set from the files of the published one (``--diagsonly`` on the
        same tag: the model files stay, the diagnostics are replaced).
    inherit_dirs : with ``inherit``, its directories too (``plots_TAG``; the ensemble file of
        ``--ensemble`` is added to the whole published set).
    """

    def __init__(
        self,
        output: Path,
        tag: str,
        argv: Sequence[str] | None = None,
        inherit: bool = False,
        inherit_dirs: bool = False,
    ):
        self.output = Path(output)
        self.tag = tag
        self.argv = list(argv or [])
        self.inherit = inherit
        self.inherit_dirs = inherit_dirs
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.run_id = f"{stamp}-{host_name()}-{os.getpid()}-{os.urandom(3).hex()}"  # unique within a process too
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
            digest_written_files(self.stage)  # the manifest's checksums, computed as the files are written
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
                _link_or_copy(p, self.stage / p.name)
            elif self.inherit_dirs and p.is_dir() and not p.is_symlink():
                shutil.copytree(p, self.stage / p.name, copy_function=_link_or_copy)

    def clean_stale(self) -> None:
        """Remove what interrupted runs of this tag left: unpublished staging sets, temporaries,
        dangling links of this tag (we hold the tag's lock, so none of it is in use)."""
        remove_stale_temporaries(self.output)
        for sub in self.output.glob(f"checkpoints_{self.tag}"):
            remove_stale_temporaries(sub)
        if self.tag_dir.is_dir():
            self._adopt_copied_set()
            keep = {CURRENT}
            cur = current_set(self.output, self.tag)
            if cur is not None:
                keep.add(cur.name)
            for p in self.tag_dir.iterdir():
                if p.name not in keep:
                    log.warning("removing %s, left by an interrupted run", p)
                    with contextlib.suppress(OSError):
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    def _adopt_copied_set(self) -> None:
        """``.sets/TAG/current`` a directory, not a link: an output directory copied with its links followed
        (``cp -rL``, ``rsync -aL``), whose every published file is a plain copy. Its ``current`` becomes a set
        of its own (renamed to ``<run id>-copy``, ``current`` a link to it again), which the next publish
        replaces as any published set; the other set directories the copy holds are left over as after an
        interrupted run. (Before 2026-12-05 a run into such a copy removed them and then failed to switch
        ``current``: "cannot write the file (IsADirectoryError ...)".) A crash between the rename and the
        link leaves no published set of the tag in ``.sets``; the copy's files in the output directory stay."""
        link = self.tag_dir / CURRENT
        if link.is_symlink() or not link.is_dir():
            return
        name = f"{self.run_id}-copy"
        log.warning("%s is a directory (a copy made with its links followed): kept as the published set %s", link, name)
        os.rename(link, self.tag_dir / name)
        self._point_current(name)
        fsync_dir(self.tag_dir)

    def _point_current(self, name: str) -> None:
        """Make ``.sets/TAG/current`` a link to the set ``name`` in one rename (a new link beside it, renamed
        over it)."""
        tmp = self.tag_dir / f".{CURRENT}.tmp{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(name, tmp)
        os.replace(tmp, self.tag_dir / CURRENT)

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
        files: dict[str, dict[str, Any]] = {}
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "run": self.run_id,
            "tag": self.tag,
            "status": status,
            "message": message,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": self.argv,
            "config_hash": config_hash(configs or {}),
            "files": files,
        }
        try:
            for rel in self.files():
                p = self.stage / rel
                files[rel] = {"bytes": p.stat().st_size, DIGEST: written_digest(p)}
            mpath = self.stage / f"{MANIFEST_STEM}_{self.tag}.json"
            with atomic_path(mpath) as tmp:
                tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
            fsync_dir(self.stage)
            top = sorted(p.name for p in self.stage.iterdir())
            for name in top:  # links for new names dangle until the switch: the old set lacks them
                self._place_link(name)
            fault_point("publish")
            old = current_set(self.output, self.tag)
            self._point_current(self.run_id)  # the one step
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
        """Forget the unpublished set: remove the staging directory, what :meth:`begin` created, and the links
        :meth:`publish` placed for names the published set lacks (they dangle: a failure between placing them
        and the switch left them)."""
        if not self.published:
            shutil.rmtree(self.stage, ignore_errors=True)
            for d in reversed(self._created_dirs):
                with contextlib.suppress(OSError):
                    d.rmdir()
            self._created_dirs.clear()
            prefix = os.path.join(SETS_DIR, self.tag, CURRENT) + os.sep
            for p in self.output.iterdir() if self.output.is_dir() else ():
                if p.is_symlink() and os.readlink(p).startswith(prefix) and not p.exists():
                    with contextlib.suppress(OSError):
                        p.unlink()

    def release(self) -> None:
        """Release the lock; remove the output directory if this run created it and left it empty."""
        digest_written_files(self.stage, on=False)
        self.lock.release()
        self._remove_created_output()

    def _remove_created_output(self) -> None:
        if self.output_created:
            with contextlib.suppress(OSError):
                self.output.rmdir()


def _link_or_copy(src, dst) -> None:
    """A hard link of ``src`` at ``dst`` (a copy where the file system has none)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


__all__ = [
    "SETS_DIR",
    "CURRENT",
    "MANIFEST_STEM",
    "MANIFEST_FORMAT",
    "config_hash",
    "current_set",
    "read_manifest",
    "verify_set",
    "OutputSet",
]

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

The pieces live in :mod:`.atomic`, :mod:`.output_set` and :mod:`.lock`;
:mod:`.faults` holds the kill tests' hook. Their public names are imported here.

No torch and no model here: :mod:`empirical_seaice.io` stays usable without them.
"""

from empirical_seaice.io.transaction.atomic import (
    DIGEST,
    OutputWriteError,
    atomic_path,
    crc32_function,
    file_digest,
    fsync_dir,
    health_marks,
    make_dir,
    tmp_name,
    write_error,
)
from empirical_seaice.io.transaction.faults import FAULT_ENV, fault_point
from empirical_seaice.io.transaction.lock import LOCK_PREFIX, OutputLock, pid_alive, remove_stale_temporaries
from empirical_seaice.io.transaction.output_set import (
    CURRENT,
    MANIFEST_FORMAT,
    MANIFEST_STEM,
    SETS_DIR,
    OutputSet,
    config_hash,
    current_set,
    read_manifest,
    verify_set,
)

__all__ = [
    "atomic_path",
    "crc32_function",
    "health_marks",
    "make_dir",
    "DIGEST",
    "file_digest",
    "fsync_dir",
    "tmp_name",
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
    "LOCK_PREFIX",
    "SETS_DIR",
    "CURRENT",
    "MANIFEST_STEM",
    "MANIFEST_FORMAT",
]

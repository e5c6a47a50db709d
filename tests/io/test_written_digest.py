"""The manifest's checksums are computed in the background as an output set's files are written
(io/transaction/atomic.py): the same SHA-256 as reading the file at publishing, and a file changed
after it was hashed is hashed again, a renamed one (a held output promoted) keeps its digest; a digest
that fails in the background is no failure of the write."""

from __future__ import annotations

import hashlib
import json
import os
import threading

from empirical_seaice.io import transaction as txn
from empirical_seaice.io.transaction import atomic


def _write(path, data: bytes):
    with txn.atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _wait_for_digests():
    with atomic._digest_lock:
        futures = [f for _, f in atomic._digests.values()]
    for f in futures:
        f.result()


def test_background_digests_equal_the_published_checksums(tmp_path, monkeypatch):
    hashed = []
    real = atomic.file_digest
    monkeypatch.setattr(
        atomic, "file_digest", lambda p, *a: hashed.append(os.path.basename(getattr(p, "name", p))) or real(p, *a)
    )
    run_set = txn.OutputSet(tmp_path / "out", "t")
    stage = run_set.begin()
    _write(stage / "a_t.nc", b"a" * 3_000_000)
    held = stage / ".held"
    held.mkdir()
    _write(held / "b_t.nc", b"b" * 1000)  # held (hashed), then promoted by a rename: the same file, not hashed again
    _wait_for_digests()
    with txn.atomic_path(stage / "b_t.nc") as tmp:
        os.replace(held / "b_t.nc", tmp)
    _write(stage / "c_t.nc", b"c" * 10)
    _wait_for_digests()
    with open(stage / "c_t.nc", "ab") as f:  # changed after it was hashed: hashed again at publishing
        f.write(b"more")
    manifest = run_set.publish()
    run_set.release()
    assert sorted(h for h in hashed if h.endswith(".nc")) == ["a_t.nc", "b_t.nc", "c_t.nc", "c_t.nc"], hashed
    on_disk = json.loads((tmp_path / "out" / "manifest_t.json").read_text())["files"]
    for name in ("a_t.nc", "b_t.nc", "c_t.nc"):
        assert manifest["files"][name]["sha256"] == real(tmp_path / "out" / name) == on_disk[name]["sha256"]
    assert txn.verify_set(tmp_path / "out", "t") == []


def test_files_outside_an_output_set_are_not_hashed(tmp_path, monkeypatch):
    hashed = []
    monkeypatch.setattr(atomic, "file_digest", lambda p, *a: hashed.append(p) or "x")
    _write(tmp_path / "checkpoint.pt", b"x" * 100)
    assert hashed == []


def test_a_failing_background_digest_is_no_failed_write(tmp_path, monkeypatch):
    """An open that fails on the digest thread (too many open files) leaves the write done and the
    file without a background digest: the manifest reads it again, with the right checksum."""
    real_open = open

    def failing_open(path, *a, **k):
        if threading.current_thread().name.startswith("file-digest"):
            raise OSError(24, "Too many open files")
        return real_open(path, *a, **k)

    monkeypatch.setattr(atomic, "open", failing_open, raising=False)
    run_set = txn.OutputSet(tmp_path / "out", "t")
    stage = run_set.begin()
    _write(stage / "a_t.nc", b"a" * 5000)
    _wait_for_digests()
    assert (stage / "a_t.nc").read_bytes() == b"a" * 5000
    manifest = run_set.publish()
    run_set.release()
    assert manifest["files"]["a_t.nc"]["sha256"] == atomic.file_digest(tmp_path / "out" / "a_t.nc")
    assert txn.verify_set(tmp_path / "out", "t") == []


def test_a_failing_stat_after_the_rename_is_no_failed_write(tmp_path, monkeypatch):
    real_identity = atomic._identity
    calls = []

    def failing_once(path):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(24, "Too many open files")
        return real_identity(path)

    monkeypatch.setattr(atomic, "_identity", failing_once)
    run_set = txn.OutputSet(tmp_path / "out", "t")
    stage = run_set.begin()
    _write(stage / "a_t.nc", b"a" * 5000)  # no digest queued, no error
    assert calls == [stage / "a_t.nc"]
    manifest = run_set.publish()
    run_set.release()
    assert manifest["files"]["a_t.nc"]["sha256"] == atomic.file_digest(tmp_path / "out" / "a_t.nc")


def test_release_drops_the_digests_of_its_set(tmp_path):
    run_set = txn.OutputSet(tmp_path / "out", "t")
    stage = run_set.begin()
    _write(stage / "a_t.nc", b"a" * 100)
    with atomic._digest_lock:
        assert any(p == stage / "a_t.nc" for p, _ in atomic._digests.values())
    run_set.abort()
    run_set.release()
    with atomic._digest_lock:
        assert not any(p.is_relative_to(stage) for p, _ in atomic._digests.values())


def test_the_checksum_is_sha256_as_sha256sum_gives_it(tmp_path):
    (tmp_path / "abc").write_bytes(b"abc")  # FIPS 180-2's first example
    assert atomic.file_digest(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    data = bytes(range(256)) * 9000  # 2.3 MB: three reads of 1 MiB, the last one short
    (tmp_path / "big").write_bytes(data)
    assert atomic.file_digest(tmp_path / "big") == hashlib.sha256(data).hexdigest()
    blake = hashlib.blake2b(data, digest_size=16).hexdigest()
    assert atomic.file_digest(tmp_path / "big", algorithm="blake2b") == blake


def test_a_manifest_of_blake2b_checksums_is_still_verified(tmp_path):
    """A set published before the checksums were SHA-256 keeps its manifest's BLAKE2b checksums: verified
    with them, and a changed file is still found."""
    run_set = txn.OutputSet(tmp_path / "out", "t")
    stage = run_set.begin()
    _write(stage / "a_t.nc", b"a" * 5000)
    run_set.publish()
    run_set.release()
    mpath = (tmp_path / "out" / "manifest_t.json").resolve()
    manifest = json.loads(mpath.read_text())
    info = manifest["files"]["a_t.nc"]
    info["blake2b"] = atomic.file_digest(tmp_path / "out" / "a_t.nc", algorithm="blake2b")
    del info["sha256"]
    mpath.write_text(json.dumps(manifest))
    assert txn.verify_set(tmp_path / "out", "t") == []
    info["blake2b"] = "0" * 32
    mpath.write_text(json.dumps(manifest))
    assert txn.verify_set(tmp_path / "out", "t") == ["a_t.nc: checksum differs"]

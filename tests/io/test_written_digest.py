"""The manifest's checksums are computed in the background as an output set's files are written
(io/transaction/atomic.py): the same BLAKE2b as reading the file at publishing, and a file changed
after it was hashed is hashed again."""

from __future__ import annotations

import json
import os

from empirical_seaice.io import transaction as txn
from empirical_seaice.io.transaction import atomic


def _write(path, data: bytes):
    with txn.atomic_path(path) as tmp:
        tmp.write_bytes(data)


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
    _write(held / "b_t.nc", b"b" * 1000)  # held, then promoted by a rename: hashed once
    with txn.atomic_path(stage / "b_t.nc") as tmp:
        os.replace(held / "b_t.nc", tmp)
    _write(stage / "c_t.nc", b"c" * 10)
    with open(stage / "c_t.nc", "ab") as f:  # changed after it was hashed: hashed again at publishing
        f.write(b"more")
    manifest = run_set.publish()
    run_set.release()
    assert sorted(h for h in hashed if h.endswith(".nc")) == ["a_t.nc", "b_t.nc", "c_t.nc", "c_t.nc"], hashed
    on_disk = json.loads((tmp_path / "out" / "manifest_t.json").read_text())["files"]
    for name in ("a_t.nc", "b_t.nc", "c_t.nc"):
        assert manifest["files"][name]["blake2b"] == real(tmp_path / "out" / name) == on_disk[name]["blake2b"]
    assert txn.verify_set(tmp_path / "out", "t") == []


def test_files_outside_an_output_set_are_not_hashed(tmp_path, monkeypatch):
    hashed = []
    monkeypatch.setattr(atomic, "file_digest", lambda p, *a: hashed.append(p) or "x")
    _write(tmp_path / "checkpoint.pt", b"x" * 100)
    assert hashed == []

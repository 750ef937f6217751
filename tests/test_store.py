"""Resumable stores resume only the same work, keep work they cannot check, admit one writer at a time and
commit only complete groups; a committed store holds exactly what an uninterrupted write holds; every chunk
is checksummed, so a flipped byte is reported with the store, array and image and the command that restores
it (run here as the message gives it)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import depthcore.io
from depthcore.data.store import ResumableStore, Store, StoreError, partial_path
from depthcore.io import LockedError


def write(path, key, values, *, stop_after=None, log=print):
    """Write ``values`` item by item (returns the items written in this call); stop like a kill."""
    store = ResumableStore(path, key=key, log=log)
    array = store.array("x", values.shape, values.dtype)
    written = []
    for i in range(store.done, len(values)):
        if stop_after is not None and len(written) == stop_after:
            raise KeyboardInterrupt
        array[i] = values[i]
        written.append(i)
        store.mark_done(i + 1)
    store.commit({"n": len(values)})
    return written


def files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


VALUES = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)


def test_same_key_resumes_and_skips_the_finished_items(tmp_path):
    messages = []
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "a.zarr", "k1", VALUES, stop_after=2)
    assert not (tmp_path / "a.zarr").exists() and partial_path(tmp_path / "a.zarr").exists()
    assert write(tmp_path / "a.zarr", "k1", VALUES, log=messages.append) == [2, 3, 4]
    assert any("resuming from image 2" in m for m in messages)
    write(tmp_path / "fresh.zarr", "k1", VALUES)
    np.testing.assert_array_equal(Store(tmp_path / "a.zarr").read("x"), VALUES)
    assert files(tmp_path / "a.zarr") == files(tmp_path / "fresh.zarr")
    assert not partial_path(tmp_path / "a.zarr").exists()


def test_other_inputs_start_afresh_and_say_why(tmp_path):
    messages = []
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "a.zarr", "k1", VALUES, stop_after=3)
    changed = VALUES + 100  # e.g. the input images changed between the kill and the rerun
    assert write(tmp_path / "a.zarr", "k2", changed, log=messages.append) == [0, 1, 2, 3, 4]
    assert any("starting afresh (its inputs changed)" in m for m in messages)
    np.testing.assert_array_equal(Store(tmp_path / "a.zarr").read("x"), changed)  # no mix of old and new


def test_a_run_without_identity_keeps_the_unfinished_work_and_says_how_to_resume(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "a.zarr", "k1", VALUES, stop_after=3)
    before = files(partial_path(tmp_path / "a.zarr"))
    with pytest.raises(
        StoreError, match=r"a.zarr.partial holds unfinished work \(3 images done\), kept: .*`dvc repro`"
    ):
        write(tmp_path / "a.zarr", None, VALUES)
    assert files(partial_path(tmp_path / "a.zarr")) == before  # nothing deleted
    assert write(tmp_path / "a.zarr", "k1", VALUES) == [3, 4]  # and DVC's rerun resumes it
    # quick work (resume=False) is simply redone
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "b.zarr", "k1", VALUES, stop_after=3)
    store = ResumableStore(tmp_path / "b.zarr", key=None, resume=False, log=lambda m: None)
    assert store.done == 0


def test_a_second_writer_waits_for_the_first_or_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(depthcore.io, "LOCK_WAIT_S", 0.3)
    first = ResumableStore(tmp_path / "a.zarr", key="k")
    with pytest.raises(LockedError, match=rf"another process \(pid {os.getpid()}\) is writing .*a.zarr.partial"):
        ResumableStore(tmp_path / "a.zarr", key="k")
    assert partial_path(tmp_path / "a.zarr").exists()  # the first writer's work is untouched
    monkeypatch.setattr(depthcore.io, "LOCK_WAIT_S", 5.0)
    threading.Timer(0.3, first.lock.release).start()
    started = time.monotonic()
    second = ResumableStore(tmp_path / "a.zarr", key="k", log=lambda m: None)  # waits for the release
    assert time.monotonic() - started >= 0.25 and second.lock.held(second.tmp)


def test_an_incomplete_group_is_never_committed(tmp_path):
    store = ResumableStore(tmp_path / "a.zarr", key="k")
    array = store.array("x", VALUES.shape, VALUES.dtype)
    array[:] = VALUES
    store.mark_done(len(VALUES))
    store.array("y", (5, 2), np.float32)[:4] = 0.0  # image 4 never written (all zeros are written too)
    with pytest.raises(StoreError, match=r"array 'y' has 4 of 5 chunks\), so it was not committed .*kept"):
        store.commit({})
    store.array("y", (5, 2), np.float32)[4] = 0.0
    (partial_path(tmp_path / "a.zarr") / "x" / "c" / "2" / "0").unlink()  # a chunk lost, e.g. by a second writer
    with pytest.raises(StoreError, match=r"array 'x' has 4 of 5 chunks"):
        store.commit({})
    assert not (tmp_path / "a.zarr").exists() and partial_path(tmp_path / "a.zarr").exists()
    store.mark_done(3)
    array[2] = VALUES[2]
    with pytest.raises(StoreError, match=r"array 'x' has 5 images but 3 are recorded as written"):
        store.commit({})


def test_temporary_chunk_files_of_a_killed_write_do_not_reach_the_finished_store(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "a.zarr", "k", VALUES, stop_after=2)
    chunk_dir = partial_path(tmp_path / "a.zarr") / "x" / "c"
    (chunk_dir / "2.0123456789abcdef0123456789abcdef.partial").write_bytes(b"half a chunk")
    write(tmp_path / "a.zarr", "k", VALUES)
    write(tmp_path / "fresh.zarr", "k", VALUES)
    assert files(tmp_path / "a.zarr") == files(tmp_path / "fresh.zarr")


def flip_byte(path: Path, offset: int) -> None:
    """Flip one bit of the byte at ``offset`` (negative: from the end), keeping the mtime and the mode (bit rot;
    a read-only file, e.g. one DVC links to its cache, is written for a moment)."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.chmod(stat.st_mode | 0o200)
    path.write_bytes(bytes(data))
    path.chmod(stat.st_mode)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_corrupt_chunk_names_store_array_image_and_the_fix(tmp_path):
    write(tmp_path / "a.zarr", "k", VALUES)
    store = Store(tmp_path / "a.zarr", required=("x",))
    (tmp_path / "a.zarr" / "x" / "c" / "3" / "0").write_bytes(b"garbage")
    np.testing.assert_array_equal(store.read("x", 2), VALUES[2])
    with pytest.raises(StoreError, match=r"a.zarr: array 'x', image\(s\) 3 cannot be read .*depthcore.pipeline repair"):
        store.read("x", 3)
    with pytest.raises(StoreError, match=r"lacks the array\(s\) \['y'\]"):
        Store(tmp_path / "a.zarr", required=("y",))
    with pytest.raises(StoreError, match="unfinished b.zarr.partial exists"):
        partial_path(tmp_path / "b.zarr").mkdir()
        Store(tmp_path / "b.zarr")


STORES = ("dataset", "features", "zeroshot", "segments", "pairs")


@pytest.mark.parametrize("name", STORES)
def test_a_flipped_byte_anywhere_in_a_chunk_of_any_store_fails_the_read(pipeline, name):
    store = Store(getattr(pipeline, name))
    for array in sorted(store.group.array_keys()):
        chunk = next(p for p in sorted((store.path / array / "c").rglob("*")) if p.is_file())
        index = int(chunk.relative_to(store.path / array / "c").parts[0])
        original = chunk.read_bytes()
        for offset in (0, len(original) // 2, -5, -1):  # payload start, middle, its end, the checksum
            flip_byte(chunk, offset)
            try:
                with pytest.raises(StoreError, match=rf"array '{array}', image\(s\) {index} cannot be read"):
                    store.read(array, index)
            finally:
                chunk.write_bytes(original)
        store.read(array, index)


MAKE_STORE = """
import numpy as np
from depthcore.data.store import ResumableStore
open("runs.log", "a").write("ran\\n")  # outside the output: how often the stage computed
values = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
store = ResumableStore("a.zarr", key="k")
array = store.array("x", values.shape, values.dtype)
for i in range(len(values)):
    array[i] = values[i]
    store.mark_done(i + 1)
store.commit({"n": len(values)})
"""


@pytest.mark.parametrize("cache", ["copy", "shipped"])
def test_the_repair_advice_works_as_written_on_bit_rot(tmp_path, cache):
    """A byte flipped with the mtime kept: DVC's status is clean, but the read fails, `verify` names the output
    and the command in the message, run verbatim, repairs it. With DVC's default cache (``copy``: the workspace
    holds a copy) from the intact cache, computing nothing; under the project's .dvc/config (``shipped``: the
    workspace file and its cache object are one file, so the cache is corrupt too) by deleting the corrupt
    object and recomputing the store, which DVC then stores afresh."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["DVC_NO_ANALYTICS"] = "1"

    def run(*cmd: str, rc: int = 0) -> str:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == rc, done.stdout + done.stderr
        return done.stdout

    run("dvc", "init", "--no-scm", "-q")
    if cache == "shipped":
        config = (Path(__file__).resolve().parents[1] / ".dvc" / "config").read_text()
        (tmp_path / ".dvc" / "config").write_text(config.replace("[core]", "[core]\n    no_scm = True", 1))
    (tmp_path / "make.py").write_text(MAKE_STORE)
    (tmp_path / "dvc.yaml").write_text("stages:\n  make:\n    cmd: python make.py\n    outs: [a.zarr]\n")
    run("dvc", "repro", "-q")
    chunk = tmp_path / "a.zarr" / "x" / "c" / "1" / "0"
    obj = tmp_path / ".dvc" / "cache" / "files" / "md5" / md5_name(chunk)
    assert chunk.samefile(obj) == (cache == "shipped")  # one file under the project's config
    flip_byte(chunk, 3)
    assert "up to date" in run("dvc", "status")
    with pytest.raises(StoreError) as error:
        Store(tmp_path / "a.zarr").read("x", 1)
    command = re.search(r"repair it with `([^`]+)`", str(error.value)).group(1)
    assert command.endswith(f"repair {tmp_path / 'a.zarr'}")
    verify = run("python", "-m", "depthcore.pipeline", "verify", rc=1)
    assert "repair: python -m depthcore.pipeline repair a.zarr" in verify
    run(*shlex.split(command))  # verbatim
    np.testing.assert_array_equal(Store(tmp_path / "a.zarr").read("x"), VALUES)
    assert md5_name(obj) == obj.relative_to(obj.parents[1]).as_posix()  # the cache object is intact again
    assert "all intact" in run("python", "-m", "depthcore.pipeline", "verify")
    assert "up to date" in run("dvc", "status")
    assert (tmp_path / "runs.log").read_text().count("ran") == (1 if cache == "copy" else 2)


def md5_name(path: Path) -> str:
    """The relative path of DVC's cache object for ``path``'s bytes: md5[:2]/md5[2:]."""
    import hashlib

    digest = hashlib.md5(path.read_bytes()).hexdigest()
    return f"{digest[:2]}/{digest[2:]}"

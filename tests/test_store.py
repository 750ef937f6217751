"""Resumable stores resume only the same work; a committed store holds exactly what an uninterrupted
write holds; a corrupt chunk is reported with the store, array and image and how to restore it."""

from __future__ import annotations

import numpy as np
import pytest

from depthcore.data.store import ResumableStore, Store, StoreError, partial_path


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


@pytest.mark.parametrize("second_key", ["k2", None])
def test_other_inputs_start_afresh_and_say_why(tmp_path, second_key):
    messages = []
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "a.zarr", "k1", VALUES, stop_after=3)
    changed = VALUES + 100  # e.g. the input images changed between the kill and the rerun
    assert write(tmp_path / "a.zarr", second_key, changed, log=messages.append) == [0, 1, 2, 3, 4]
    assert any("starting afresh" in m for m in messages)
    np.testing.assert_array_equal(Store(tmp_path / "a.zarr").read("x"), changed)  # no mix of old and new


def test_temporary_chunk_files_of_a_killed_write_do_not_reach_the_finished_store(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "a.zarr", "k", VALUES, stop_after=2)
    chunk_dir = partial_path(tmp_path / "a.zarr") / "x" / "c"
    (chunk_dir / "2.0123456789abcdef0123456789abcdef.partial").write_bytes(b"half a chunk")
    write(tmp_path / "a.zarr", "k", VALUES)
    write(tmp_path / "fresh.zarr", "k", VALUES)
    assert files(tmp_path / "a.zarr") == files(tmp_path / "fresh.zarr")


def test_corrupt_chunk_names_store_array_image_and_the_fix(tmp_path):
    write(tmp_path / "a.zarr", "k", VALUES)
    store = Store(tmp_path / "a.zarr", required=("x",))
    (tmp_path / "a.zarr" / "x" / "c" / "3" / "0").write_bytes(b"garbage")
    np.testing.assert_array_equal(store.read("x", 2), VALUES[2])
    with pytest.raises(StoreError, match=r"a.zarr: array 'x', image\(s\) 3 cannot be read .*dvc checkout"):
        store.read("x", 3)
    with pytest.raises(StoreError, match=r"lacks the array\(s\) \['y'\]"):
        Store(tmp_path / "a.zarr", required=("y",))
    with pytest.raises(StoreError, match="unfinished b.zarr.partial exists"):
        partial_path(tmp_path / "b.zarr").mkdir()
        Store(tmp_path / "b.zarr")

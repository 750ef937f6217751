"""NYU Depth v2 labelled set: the official files, and streaming reads of the MATLAB v7.3 file.

``nyu_depth_v2_labeled.mat`` is HDF5 (MATLAB v7.3). MATLAB stores arrays column-major, so h5py
sees every array with its axes reversed: ``images`` is (N, 3, W, H), ``depths`` (N, W, H). The
reader transposes one image at a time back to H x W (x 3) and never loads the whole file.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from depthcore.download import RemoteFile
from depthcore.errors import DepthcoreError

MAT_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_NAME = "splits.mat"
# Size and SHA-256 of the official files as recorded by other users of the dataset (docs/pipeline.md, "Data").
MAT_SIZE = 2_972_037_809
MAT_SHA256 = "2d724b0c0ab358aa1ce5df855e5bd14a2279ab7202efe22f32a30d612dcb86aa"
SPLITS_SIZE = 2626
SPLITS_SHA256 = "6e081404491a8bfba2f066beaa9713ef6046f9007aa5f799f2a350506a580cee"
REQUIRED_DATASETS = ("images", "depths", "rawDepths", "labels", "instances", "scenes")


class NYUv2Error(DepthcoreError, RuntimeError):
    """The .mat or split file is missing, truncated, or not laid out as the official files are."""


def remote_files(url: str, splits_url: str) -> tuple[RemoteFile, RemoteFile]:
    """The two official files with their pinned sizes and hashes."""
    return (
        RemoteFile(url=url, filename=MAT_NAME, size=MAT_SIZE, sha256=MAT_SHA256),
        RemoteFile(url=splits_url, filename=SPLITS_NAME, size=SPLITS_SIZE, sha256=SPLITS_SHA256),
    )


def combine_instances(labels: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """One id per object from NYUv2's (class label, per-class instance number) pairs.

    labels, instances: H x W (0 label = unlabelled). Returns H x W int32: 0 where unlabelled, else
    1..K numbering the distinct (label, instance) pairs in increasing (label, instance) order.
    """
    key = labels.astype(np.int64) * 65536 + instances.astype(np.int64)
    key = np.where(labels > 0, key, -1)
    uniq, inverse = np.unique(key, return_inverse=True)
    ids = inverse.reshape(labels.shape).astype(np.int32)
    if uniq[0] != -1:  # no unlabelled pixel: shift so ids start at 1
        ids += 1
    return ids


class LabeledMat:
    """Read-only streaming access to ``nyu_depth_v2_labeled.mat`` (use as a context manager)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.exists():
            raise NYUv2Error(f"{self.path} does not exist; run the fetch_data stage first (dvc repro fetch_data)")
        if not h5py.is_hdf5(self.path):
            raise NYUv2Error(
                f"{self.path} is not a MATLAB v7.3 (HDF5) file: it is truncated or not the official "
                f"{MAT_NAME}. Delete it and rerun `dvc repro fetch_data`."
            )
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as exc:
            raise NYUv2Error(f"{self.path} cannot be opened as HDF5 ({exc}); it is probably truncated") from exc
        missing = [name for name in REQUIRED_DATASETS if name not in self.file]
        if missing:
            self.file.close()
            raise NYUv2Error(
                f"{self.path} lacks the dataset(s) {missing} of the official labelled NYUv2 file "
                f"(it has {sorted(self.file.keys()) if self.file else '?'})"
            )
        images = self.file["images"]
        if images.ndim != 4 or images.shape[1] != 3:
            raise NYUv2Error(f"{self.path}: 'images' has shape {images.shape}, expected (N, 3, W, H)")
        self.n, _, self.width, self.height = images.shape
        for name in ("depths", "rawDepths", "labels", "instances"):
            if self.file[name].shape != (self.n, self.width, self.height):
                raise NYUv2Error(
                    f"{self.path}: '{name}' has shape {self.file[name].shape}, "
                    f"expected {(self.n, self.width, self.height)} like 'images'"
                )

    def __enter__(self) -> LabeledMat:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def __len__(self) -> int:
        return self.n

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Image ``i`` (0-based): rgb H x W x 3 uint8; depth and depth_eval H x W float32 metres
        (in-painted ``depths`` and raw ``rawDepths``, 0 = invalid); instances H x W int32."""
        try:
            f = self.file
            return {
                "rgb": np.ascontiguousarray(f["images"][i].transpose(2, 1, 0)),
                "depth": np.ascontiguousarray(f["depths"][i].T, dtype=np.float32),
                "depth_eval": np.ascontiguousarray(f["rawDepths"][i].T, dtype=np.float32),
                "instances": combine_instances(f["labels"][i].T, f["instances"][i].T),
            }
        except OSError as exc:
            raise NYUv2Error(f"{self.path}: cannot read image {i} ({exc}); the file is probably truncated") from exc

    def scene_names(self) -> list[str]:
        """The ``scenes`` cell array (one name per image, e.g. 'kitchen_0004')."""
        refs = self.file["scenes"]
        names = []
        for ref in np.asarray(refs).ravel():
            chars = np.asarray(self.file[ref]).ravel()
            names.append("".join(chr(int(c)) for c in chars))
        if len(names) != self.n:
            raise NYUv2Error(f"{self.path}: 'scenes' has {len(names)} entries for {self.n} images")
        return names


def read_splits(path: Path | str, n_images: int) -> np.ndarray:
    """(n_images,) bool, True for the official training images, from ``splits.mat``.

    The file holds 1-based ``trainNdxs`` and ``testNdxs``; they must be in range, disjoint, and
    cover every image.
    """
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except Exception as exc:
        raise NYUv2Error(f"{path} is not a readable MATLAB split file ({exc}); delete it and rerun fetch_data") from exc
    if "trainNdxs" not in mat or "testNdxs" not in mat:
        raise NYUv2Error(
            f"{path} lacks 'trainNdxs'/'testNdxs' (it has {sorted(k for k in mat if not k.startswith('__'))})"
        )
    train_idx = np.asarray(mat["trainNdxs"]).ravel().astype(np.int64)
    test_idx = np.asarray(mat["testNdxs"]).ravel().astype(np.int64)
    for name, idx in (("trainNdxs", train_idx), ("testNdxs", test_idx)):
        bad = idx[(idx < 1) | (idx > n_images)]
        if bad.size:
            raise NYUv2Error(
                f"{path}: {name} has {bad.size} index(es) outside 1..{n_images} (e.g. {bad[:5].tolist()}); "
                "the indices are 1-based into the labelled .mat: is this the split file of that dataset?"
            )
    if np.intersect1d(train_idx, test_idx).size:
        raise NYUv2Error(f"{path}: trainNdxs and testNdxs overlap")
    if train_idx.size + test_idx.size != n_images:
        raise NYUv2Error(
            f"{path}: {train_idx.size} train + {test_idx.size} test indices do not cover the {n_images} images"
        )
    train = np.zeros(n_images, dtype=bool)
    train[train_idx - 1] = True
    return train

"""The selected backbone, end to end up to its weights: what the ``backbone`` stage records of it, what the
``fetch_backbone`` stage puts in its weights folder, and the frozen model that folder describes.

Every weights file the stage takes (a release downloaded by tag, a file under ``weights/backbone/``) is converted
once, by the backbone's own conversion (:mod:`depthcore.weights.convert`), checked by building the backbone from it,
and written as safetensors: a file that does not fit is refused here, not in a later stage.

``backbone: clip_rn50`` (the paper's) keeps its settings in the ``clip`` section and its weights exactly as
before (:mod:`depthcore.weights.fetch_clip`). Every other backbone (:mod:`depthcore.models.backbones.zoo`) has
``backbones.<name>``: ``pretrained`` (its release tag, ``none`` for seeded random weights, or a file under
``weights/backbone/``), ``init_seed`` and the ``layers`` to cache.

The ``backbone`` stage writes ``backbone.json``: the selected backbone's settings alone and the content hashes
of its module's code. The weights and feature stages depend on that file, not on the params, so editing another
backbone's settings or code re-runs only that small stage (whose output does not change), and switching the
backbone and back is restored by DVC's run-cache. The weights stage's folder is kept while it runs (``persist``,
for resuming downloads), which DVC's run-cache does not restore; so every release fetched is also kept in
``data/weights/downloads/`` (verified by SHA-256 when reused) and a switch back re-links it instead of
downloading it again.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from depthcore.closure import code_hashes
from depthcore.download import DownloadError, RemoteFile, fetch
from depthcore.io import atomic_path, read_json, sha256_of, write_json_atomic
from depthcore.models.backbones.zoo.registry import BACKBONES, backbone_spec
from depthcore.weights.convert import (
    PAPER_BACKBONE,
    RELEASE_ENTRIES,
    checked_state_dict,
    convert_weights_file,
    fits,
    state_dict_of,  # noqa: F401  (re-exported: tests read it from here)
)
from depthcore.weights.fetch_clip import fetch_clip_weights
from depthcore.weights.load import OPTIONS, load_backbone, manifest_backbone  # noqa: F401  (re-exported)
from depthcore.weights.manifest import (
    MANIFEST,
    WeightsError,
    write_weights_dir,
)

INDEX = "index.json"  # of the downloads folder: release key -> the kept file and its manifest entries
HF_SHA_HEADER = "X-Linked-Etag"  # Hugging Face's header with the SHA-256 of a file stored with Git LFS
SIDE_FILES = "side_files"  # manifest: SHA-256 of each file placed by hand the backbone reads besides its weights


COMMON_SETTINGS = frozenset({"pretrained", "init_seed", "layers"})


def selected_settings(params) -> dict[str, Any]:
    """What ``backbone.json`` holds: the selected backbone's name and settings (for clip_rn50 the clip section's
    model, pretrained, init_seed and cache_layers; a zoo backbone's own further settings, e.g. DINOv3's
    ``final_norm``, under ``options``, which the weights manifest passes on to :func:`load_backbone`) and the content
    hashes of its module's code."""
    name = params.backbone
    if name == PAPER_BACKBONE:
        clip = params.clip
        settings = {"model": clip.model, "pretrained": clip.pretrained, "init_seed": clip.init_seed}
        settings["layers"] = list(clip.cache_layers)
    else:
        cfg = getattr(params.backbones, name)
        settings = {"model": name, "pretrained": cfg.pretrained, "init_seed": cfg.init_seed, "layers": list(cfg.layers)}
        options = cfg.model_dump(mode="json", exclude=set(COMMON_SETTINGS))
        if options:
            settings[OPTIONS] = options
    return {"backbone": name} | settings | {"code": code_hashes(BACKBONES.get(name).module)}


def write_selected(params, out: Path | str) -> dict[str, Any]:
    """The backbone stage: ``backbone.json`` for the selected backbone; returns what it wrote."""
    settings = selected_settings(params)
    write_json_atomic(out, settings)
    return settings


def read_selected(path: Path | str) -> dict[str, Any]:
    """``backbone.json`` as the backbone stage wrote it; WeightsError naming the stage when it is missing."""
    if not Path(path).is_file():
        raise WeightsError(f"{path} not found: run `dvc repro backbone` first")
    return read_json(path)


# ------------------------------------------------------------------------------------------------ weights
def fetch_backbone_weights(
    selected: dict[str, Any], out_dir: Path | str, *, local_dir: Path, downloads: Path, progress: bool = True
) -> Path:
    """The fetch_backbone stage: make ``out_dir`` hold the weights ``selected`` (``backbone.json``) names and their
    manifest (which also names the backbone); returns the manifest path. A release kept in ``downloads`` is
    re-linked instead of downloaded again."""
    name = selected["backbone"]
    choice = SimpleNamespace(
        model=selected["model"], pretrained=selected["pretrained"], init_seed=selected["init_seed"]
    )
    if name == PAPER_BACKBONE:
        remote = choice.pretrained == "openai"
        write = lambda: fetch_clip_weights(choice, out_dir, local_dir=local_dir, progress=progress)  # noqa: E731
    else:
        releases = {release.tag: release for release in backbone_spec(name).releases}
        remote = choice.pretrained in releases
        write = lambda: write_weights_dir(  # noqa: E731
            choice,
            out_dir,
            remote_tag=choice.pretrained if remote else "",
            fetch_remote=_release_fetcher(name, releases.get(choice.pretrained), progress),
            local_dir=local_dir,
            param=f"backbones.{name}.pretrained (a release: {sorted(releases)}; none; or a file)",
            use_local=lambda source, folder: convert_weights_file(
                name, choice.model, source, folder / f"{source.stem}.safetensors"
            ),
        )
    key = f"{name}/{choice.model}/{choice.pretrained}"
    manifest_path = _with_downloads(
        downloads, key, out_dir, remote, write, fits=lambda path: fits(name, choice.model, path)
    )
    manifest = {k: v for k, v in read_json(manifest_path).items() if k not in (OPTIONS, SIDE_FILES)}
    manifest["backbone"] = name
    if selected.get(OPTIONS):
        manifest[OPTIONS] = selected[OPTIONS]
    side = backbone_spec(name).side_files
    if side:  # files placed by hand it reads (SigLIP 2's tokenizer): their SHA-256, None while absent
        manifest[SIDE_FILES] = {f: sha256_of(Path(f)) if Path(f).is_file() else None for f in side}
    write_json_atomic(manifest_path, manifest)
    return manifest_path


def _with_downloads(downloads: Path, key: str, out_dir: Path | str, remote: bool, write, *, fits) -> Path:
    """Run ``write()`` (which fills ``out_dir`` and returns its manifest path) for a release ``key``, first
    re-linking the release's file from ``downloads`` when it was kept there (and still ``fits(path)`` the backbone:
    one an older version converted wrongly is dropped and redone), and keeping it there afterwards."""
    out_dir, downloads = Path(out_dir), Path(downloads)
    index_path = downloads / INDEX
    index = read_json(index_path) if index_path.is_file() else {}
    entry = index.get(key) if remote else None
    if entry is not None:
        kept = downloads / entry["file"]
        intact = kept.is_file() and sha256_of(kept) == entry["sha256"]
        if intact and not fits(kept):
            kept.unlink()
            intact = False
        if intact:
            out_dir.mkdir(parents=True, exist_ok=True)
            target = out_dir / Path(entry["file"]).name
            if not target.exists() or sha256_of(target) != entry["sha256"]:
                _link_or_copy(kept, target)
            write_json_atomic(out_dir / MANIFEST, entry["manifest"])
    manifest_path = write()
    manifest = read_json(manifest_path)
    if remote and manifest.get("file"):
        name = manifest["file"]
        kept = downloads / key.replace("/", "__") / name
        if not kept.is_file() or sha256_of(kept) != manifest["sha256"]:
            _link_or_copy(out_dir / name, kept)
        index[key] = {"file": str(kept.relative_to(downloads)), "sha256": manifest["sha256"], "manifest": manifest}
        write_json_atomic(index_path, index)
    return manifest_path


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` with the bytes of ``source``: a hard link where the filesystem allows, else a copy (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def _release_fetcher(name: str, release, progress: bool):
    """``fetch_remote(out_dir) -> manifest entries`` for a zoo backbone's ``release`` (None: not a release): the
    file downloaded (resumable, verified), then checked (a safetensors release, kept as published) or converted
    (:func:`~depthcore.weights.convert.convert_weights_file`; the download is then removed)."""
    if release is None:
        return None
    model = backbone_spec(name).model

    def fetch_release(out_dir: Path) -> dict[str, Any]:
        previous = read_json(out_dir / MANIFEST) if (out_dir / MANIFEST).is_file() else {}
        kept = out_dir / str(previous.get("file"))
        same = previous.get("backbone", name) == name and previous.get("pretrained") == release.tag
        if same and previous.get("file") and kept.is_file() and sha256_of(kept) == previous.get("sha256"):
            if fits(name, model, kept):
                return {k: previous[k] for k in RELEASE_ENTRIES if k in previous}
        sha256 = release.sha256 or announced_sha256(release.url)
        remote = RemoteFile(url=release.url, filename=release.filename, sha256=sha256)
        path = fetch(remote, out_dir, progress=progress)
        if release.format == "safetensors":
            checked_state_dict(name, model, path)
            return {"file": path.name, "sha256": sha256_of(path), "url": release.url}
        entries = convert_weights_file(name, model, path, out_dir / f"{name}-{release.tag}.safetensors")
        path.unlink()
        return entries | {"url": release.url}

    return fetch_release


def announced_sha256(url: str, *, timeout_s: float = 30.0) -> str | None:
    """The SHA-256 a Hugging Face ``resolve`` URL announces for its file (``X-Linked-Etag`` of the answer to a
    HEAD request, before any redirect), or None when the server announces none; the download is then verified
    against it. DownloadError when the server cannot be reached."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # the first answer carries the header
            return None

    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=timeout_s) as response:
            headers = response.headers
    except urllib.error.HTTPError as exc:  # a 302 to the CDN lands here, headers and all
        if exc.code >= 400:
            raise DownloadError(f"{url}: the server answered {exc.code} {exc.reason} to a HEAD request") from None
        headers = exc.headers
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"cannot reach {url} ({exc}): download it elsewhere into weights/backbone/ and give that path as "
            "pretrained, or run offline with pretrained: none"
        ) from None
    value = (headers.get(HF_SHA_HEADER) or "").strip('"').lower()
    return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else None


# ------------------------------------------------------------------------------------------------ loading
def describe(selected: dict[str, Any]) -> str:
    """One line naming the selected backbone and its weights (for the stages' logs)."""
    return json.dumps({k: v for k, v in selected.items() if k != "code"})

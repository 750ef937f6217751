"""The DINOv2 bridge (depthcore/bridge): stand-in head files in the released format (an mmcv checkpoint: ``meta``
with numpy scalars, ``state_dict`` of ``decode_head.*`` tensors with the released ViT-S/14 heads' names and
shapes, written out by hand from dinov2's DPTHead / BNHead), loaded strictly; the linear head against a computation
by hand; the DPT head's shapes, a value by hand and determinism; the backbone's tokens against timm's own forward;
the command end to end on a tiny store; wrong files refused in one line."""

from __future__ import annotations

import argparse
import json
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from published_weights import dinov2_release

from depthcore.bridge.dinov2_heads import (
    DinoV2Depther,
    block_tokens,
    centre_pad,
    dinov2_pos_embed,
    load_backbone,
    load_head,
    read_head_tensors,
)
from depthcore.bridge.evaluate import as_bts_files
from depthcore.bridge.releases import BridgeError
from depthcore.cli import main
from depthcore.data.store import ResumableStore
from depthcore.evaluation.metrics import eigen_crop_mask
from depthcore.io import sha256_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

C = 384  # ViT-S/14 width
WIDTHS = (48, 96, 192, 384)  # post_process_channels of the released ViT-S DPT head: C / 8, C / 4, C / 2, C
F_ = 256  # its fusion width


def dpt_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of the released ViT-S/14 DPT head (dinov2's DPTHead with readout 'project', no norm), by hand."""
    s: dict[str, tuple[int, ...]] = {}
    r = "reassemble_blocks."
    for i, w in enumerate(WIDTHS):
        s |= {f"{r}projects.{i}.conv.weight": (w, C, 1, 1), f"{r}projects.{i}.conv.bias": (w,)}
        s |= {f"{r}readout_projects.{i}.0.weight": (C, 2 * C), f"{r}readout_projects.{i}.0.bias": (C,)}
        s[f"convs.{i}.conv.weight"] = (F_, w, 3, 3)
        s |= {f"fusion_blocks.{i}.project.conv.weight": (F_, F_, 1, 1), f"fusion_blocks.{i}.project.conv.bias": (F_,)}
        for unit in ("res_conv_unit1", "res_conv_unit2") if i else ("res_conv_unit2",):
            for conv in ("conv1", "conv2"):
                s[f"fusion_blocks.{i}.{unit}.{conv}.conv.weight"] = (F_, F_, 3, 3)
    s |= {f"{r}resize_layers.0.weight": (48, 48, 4, 4), f"{r}resize_layers.0.bias": (48,)}  # transposed, stride 4
    s |= {f"{r}resize_layers.1.weight": (96, 96, 2, 2), f"{r}resize_layers.1.bias": (96,)}  # transposed, stride 2
    s |= {f"{r}resize_layers.3.weight": (384, 384, 3, 3), f"{r}resize_layers.3.bias": (384,)}  # conv, stride 2
    s |= {"project.conv.weight": (F_, F_, 3, 3), "project.conv.bias": (F_,)}
    s |= {"conv_depth.head.0.weight": (128, F_, 3, 3), "conv_depth.head.0.bias": (128,)}
    s |= {"conv_depth.head.2.weight": (32, 128, 3, 3), "conv_depth.head.2.bias": (32,)}
    s |= {"conv_depth.head.4.weight": (1, 32, 1, 1), "conv_depth.head.4.bias": (1,)}
    return s


SHAPES = {  # released ViT-S/14 heads: lin. 1 reads 1 layer, lin. 4 four, each C tokens + C class token
    "linear": {"conv_depth.weight": (256, 2 * C, 1, 1), "conv_depth.bias": (256,)},
    "linear4": {"conv_depth.weight": (256, 8 * C, 1, 1), "conv_depth.bias": (256,)},
    "dpt": dpt_shapes(),
}


def random_state(head: str, seed: int = 0, scale: float = 0.05) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(shape, generator=gen) for k, shape in SHAPES[head].items()}


def write_released(state: dict[str, torch.Tensor], path, meta_extra=None):
    """A head file as mmcv's save_checkpoint writes it: meta (numpy scalars included), state_dict, optimizer."""
    meta = {"mmcv_version": "1.5.0", "iter": 38400, "hook_msgs": {"best_score": np.float64(0.41), "last_ckpt": "x"}}
    tree = {
        "meta": meta | (meta_extra or {}),
        "state_dict": OrderedDict((f"decode_head.{k}", v) for k, v in state.items()),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
    }
    torch.save(tree, path)
    return path


@pytest.fixture(scope="module")
def vit():
    return load_backbone("dinov2_vits14", None, init_seed=0)


@pytest.fixture(scope="module")
def dpt_file(tmp_path_factory):
    """A stand-in ViT-S/14 DPT head file (small random weights, the last bias 3: depth mostly above the relu)."""
    state = random_state("dpt", scale=0.01) | {"conv_depth.head.4.bias": torch.tensor([3.0])}
    return state, write_released(state, tmp_path_factory.mktemp("dpt") / "dinov2_vits14_nyu_dpt_head.pth")


# --------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("head", ["linear", "linear4", "dpt"])
def test_released_files_load_strictly(tmp_path, head, dpt_file):
    state, path = dpt_file if head == "dpt" else (random_state(head), None)
    module = load_head("dinov2_vits14", head, path or write_released(state, tmp_path / "h.pth"), (20, 30))
    loaded = module.state_dict()
    assert len(loaded) == len(state)
    for key, value in state.items():
        mine = key.replace("conv_depth.", "conv.") if head != "dpt" else key
        assert torch.equal(loaded[mine], value), key


def as_numpy1_pickle(path):
    """Rewrite a torch.save zip as numpy 1.x writes it: numpy scalars under ``numpy.core.multiarray``."""
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            out.writestr(info, data)
    return path


def test_numpy_metadata_allowed_code_refused(tmp_path):
    state = random_state("linear")
    assert set(read_head_tensors(write_released(state, tmp_path / "ok.pth"))) == set(state)
    old = as_numpy1_pickle(write_released(state, tmp_path / "numpy1.pth"))
    assert torch.equal(read_head_tensors(old)["conv_depth.bias"], state["conv_depth.bias"])
    bad = write_released(state, tmp_path / "bad.pth", meta_extra={"args": argparse.Namespace(lr=1)})
    with pytest.raises(BridgeError, match=r"needs code to load.*argparse\.Namespace") as info:
        read_head_tensors(bad)
    assert "\n" not in str(info.value)


def test_a_backbone_file_given_as_a_head_is_refused(tmp_path):
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    dinov2_release({"cls_token": torch.zeros(1, 1, C), "pos_embed": torch.zeros(1, 5, C)}, path)
    with pytest.raises(BridgeError, match=r"not a DINOv2 depth head file: expected an mmcv checkpoint") as info:
        load_head("dinov2_vits14", "linear4", path, (20, 30))
    assert "\n" not in str(info.value)
    lin1 = write_released(random_state("linear"), tmp_path / "lin1.pth")  # the lin. 1 file given for lin. 4
    with pytest.raises(BridgeError, match=r"expected dinov2_vits14_nyu_linear4_head\.pth.*mis-shaped"):
        load_head("dinov2_vits14", "linear4", lin1, (20, 30))


# --------------------------------------------------------------------------------------------- heads by hand
def test_linear4_head_equals_a_computation_by_hand(tmp_path):
    state = random_state("linear4", scale=0.5)
    size = (10, 13)
    module = load_head("dinov2_vits14", "linear4", write_released(state, tmp_path / "h.pth"), size)
    gen = torch.Generator().manual_seed(1)
    layers = [(torch.randn(1, C, 2, 3, generator=gen), torch.randn(1, C, generator=gen)) for _ in range(4)]
    batch = {}
    for name, (x, cls) in zip(("block3", "block6", "block9", "block12"), layers, strict=True):
        batch[f"clip_{name}"], batch[f"clip_{name}_cls"] = x, cls
    # by hand: [tokens, class token] per layer, x4 bilinear, 1 x 1 conv, relu + 0.1 normalised, bins 0.001..10 m
    feats = torch.cat([torch.cat([x, cls[:, :, None, None].expand_as(x)], 1) for x, cls in layers], 1)
    feats = F.interpolate(feats, size=(8, 12), mode="bilinear", align_corners=False)
    w, b = state["conv_depth.weight"][:, :, 0, 0], state["conv_depth.bias"]
    logits = torch.einsum("bchw,kc->bkhw", feats, w) + b[None, :, None, None]
    p = F.relu(logits) + 0.1
    p = p / p.sum(1, keepdim=True)
    depth = torch.einsum("bkhw,k->bhw", p, torch.linspace(0.001, 10.0, 256))[:, None]
    expected = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
    out = module(batch)
    assert out.shape == (1, 1, *size)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert out.std() > 0.05 and out.min() >= 0.001 and out.max() <= 10.0  # the logits vary the depth


def dpt_layers(grid=(3, 5), seed=2):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, C, *grid, generator=gen), torch.randn(1, C, generator=gen)) for _ in range(4)]


def test_dpt_head_shape_value_by_hand_and_determinism(dpt_file):
    module = load_head("dinov2_vits14", "dpt", dpt_file[1], (1, 1))
    # 3 x 5 tokens: the deepest layer at ceil(3/2) x ceil(5/2) = 2 x 3, four x2 fusions (32 x 48), x2 in conv_depth
    out = module(dpt_layers())
    assert out.shape == (1, 1, 64, 96)
    assert torch.equal(out, module(dpt_layers())) and out.min() >= 0.001
    assert out.std() > 0  # the random weights reach the output
    zero = {k: torch.zeros(shape) for k, shape in SHAPES["dpt"].items()}
    zero["conv_depth.head.4.bias"] = torch.tensor([2.0])  # all else zero: relu(2) + min_depth everywhere
    module.load_state_dict(zero, strict=True)
    torch.testing.assert_close(module(dpt_layers()), torch.full((1, 1, 64, 96), 2.001))


# --------------------------------------------------------------------------------------------- backbone
def test_block_tokens_equal_timms_forward_where_no_resampling_is_needed():
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch14_dinov2", img_size=28, depth=4, dynamic_img_size=True).eval()
    x = torch.randn(2, 3, 28, 28)
    mine = block_tokens(vit, x, (1, 3))
    with torch.no_grad():
        theirs = vit.forward_intermediates(
            x, indices=[1, 3], norm=False, return_prefix_tokens=True, output_fmt="NCHW", intermediates_only=True
        )
    for (maps, cls), (ref_maps, ref_prefix) in zip(mine, theirs, strict=True):
        torch.testing.assert_close(maps, ref_maps)
        torch.testing.assert_close(cls, ref_prefix[:, 0])


def test_position_embedding_and_centre_padding_follow_dinov2():
    table = torch.randn(1, 1 + 37 * 37, 8)
    assert dinov2_pos_embed(table, (37, 37)) is table  # DINOv2 returns its table unchanged at 37 x 37
    resampled = dinov2_pos_embed(table, (35, 46))  # 490 x 644: the padded NYU frame
    assert resampled.shape == (1, 1 + 35 * 46, 8) and torch.equal(resampled[:, 0], table[:, 0])
    x = torch.ones(1, 3, 24, 32)
    padded = centre_pad(x)  # -> 28 x 42: rows 2 / 2, columns 5 / 5
    assert padded.shape == (1, 3, 28, 42)
    assert padded[..., 2:26, 5:37].eq(1).all() and padded.sum() == x.sum()


def test_depther_flip_average(tmp_path, vit):
    head = load_head("dinov2_vits14", "linear", write_released(random_state("linear"), tmp_path / "h.pth"), (1, 1))
    depther = DinoV2Depther("dinov2_vits14", "linear", vit, head)
    rgb = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = 0.5 * (depther.single(rgb) + depther.single(rgb.flip(-1)).flip(-1))
    torch.testing.assert_close(depther(rgb), expected)
    torch.testing.assert_close(depther(rgb.flip(-1)), depther(rgb).flip(-1))  # symmetric by construction


def test_nyu_frames_are_read_as_btss_test_files():
    rgb = np.full((1, 480, 640, 3), 200, np.uint8)
    depth = np.full((1, 480, 640), 2.34567, np.float32)
    black, mm = as_bts_files(rgb, depth)
    assert black[0, 7:474, 7:632].min() == 200 and black.sum() == 200 * 3 * 467 * 625  # rows 7:474, cols 7:632
    assert mm[0, 0, 0] == pytest.approx(2.345, abs=1e-6)  # whole millimetres, truncated


# --------------------------------------------------------------------------------------------- command
def tiny_store(path, n=3, size=(24, 32)):
    """A dataset store of ``n`` random images (the first train, the rest test)."""
    rng = np.random.default_rng(0)
    store = ResumableStore(path, key=None, resume=False, log=lambda *_: None)
    store.array("rgb", (n, *size, 3), np.uint8)[:] = rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)
    store.array("depth_eval", (n, *size), np.float32)[:] = rng.uniform(0.5, 9.0, (n, *size)).astype(np.float32)
    store.array("split", (n,), np.int8)[:] = np.array([0] + [2] * (n - 1), np.int8)
    store.mark_done(n)
    return store.commit({"source": "synthetic"})


def test_command_end_to_end_writes_the_metrics(tmp_path, vit, capsys):
    data = tiny_store(tmp_path / "dataset.zarr")
    head = write_released(random_state("linear4"), tmp_path / "dinov2_vits14_nyu_linear4_head.pth")
    out = tmp_path / "m.json"
    argv = ["bridge", "dinov2", "--backbone", "dinov2_vits14", "--head", "linear4", "--file", str(head)]
    argv += ["--backbone-weights", "none", "--data", str(data), "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["head_file"]["sha256"] == sha256_of(head) and record["test_images"] == 2
    assert record["backbone_weights"] == {"pretrained": "none", "init_seed": 0} and not record["bts_test_files"]
    assert record["published_rmse"]["rmse"] == 0.417 and record["blocks"] == [3, 6, 9, 12]
    # the RMSE by hand from the same model (same seed) on the two test images
    depther = DinoV2Depther("dinov2_vits14", "linear4", vit, load_head("dinov2_vits14", "linear4", head, (24, 32)))
    from depthcore.data.store import Store

    store = Store(data)
    rgb = torch.from_numpy(store.read("rgb", np.array([1, 2]))).permute(0, 3, 1, 2).float() / 255
    pred = depther(rgb)[:, 0].numpy()
    gt = store.read("depth_eval", np.array([1, 2]))
    mask = eigen_crop_mask(24, 32)
    rmse = np.mean([np.sqrt(np.mean((g[mask] - p[mask]) ** 2)) for g, p in zip(gt, pred, strict=True)])
    assert record["metrics"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    assert "published rmse 0.417" in capsys.readouterr().out
    # a backbone file given as the head: exit 2, one line naming what was expected
    fake = tmp_path / "dinov2_vits14_pretrain.pth"
    dinov2_release({"cls_token": torch.zeros(1, 1, C)}, fake)
    argv[argv.index(str(head))] = str(fake)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a DINOv2 depth head file" in err and "decode_head." in err

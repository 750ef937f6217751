"""The DepthCLIP head against hand-built cases; flip averaging and paste geometry of the zero-shot output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_params

from depthcore.artifacts import load_head, save_head
from depthcore.models.heads.depthclip import DepthCLIPHead, depth_prompts, zeroshot_depth

BINS = (1.0, 2.0, 3.0)


def _head(text, **kwargs):
    return DepthCLIPHead(text_embeddings=text, bins=BINS, temperature=0.1, **kwargs)


def test_prompts_follow_template():
    prompts = depth_prompts(make_params().depthclip)
    assert prompts[0] == "This object is giant" and prompts[3] == "This object is not in distance"
    assert len(prompts) == 7


def test_head_matches_hand_computation():
    # D = 2 text space, K = 3 classes; layer4 has C = 4 channels -> channels 0 and 2 are kept.
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    vec = np.array([0.3, 0.5, 0.2, -0.4])  # one location: [a0, b0, a1, b1]
    layer4 = torch.tensor(vec, dtype=torch.float32).reshape(1, 4, 1, 1).repeat(1, 1, 2, 3)
    # by hand: normalise the 4-vector, keep (a0, a1), logits = 100 * cos / 0.1, softmax, expectation of bins
    kept = vec / np.linalg.norm(vec)
    kept = kept[[0, 2]]
    logits = 1000.0 * (text.numpy().astype(np.float64) @ kept)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    expected = float(p @ np.array(BINS))
    out = _head(text)(layer4)
    assert out.shape == (1, 1, 2, 3)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)


def test_confident_location_gives_its_bin():
    text = torch.eye(3)
    layer4 = torch.zeros(1, 6, 1, 3)
    for k in range(3):
        layer4[0, 2 * k, 0, k] = 1.0  # location k points at class k (even channel 2k -> dense dim k)
    np.testing.assert_allclose(_head(text)(layer4)[0, 0, 0].numpy(), BINS, atol=1e-4)


def test_normalise_before_channel_pick_without_renormalising():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    layer4 = torch.tensor([3.0, 4.0, 0.0, 0.0]).reshape(1, 4, 1, 1)  # the dropped odd channel is large
    dense = _head(text).dense_embeddings(layer4)
    np.testing.assert_allclose(dense.flatten().numpy(), [0.6, 0.0], atol=1e-6)  # not [1, 0] (pick, then normalise)


def test_maskclip_projects_through_value_and_output():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    proj = {
        "v_weight": torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        "v_bias": torch.tensor([0.0, 1.0, 0.0]),
        "c_weight": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),
        "c_bias": torch.tensor([1.0, 0.0]),
    }
    head = _head(text, dense="maskclip", projections=proj)
    layer4 = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    # v = (2, 3, 3); c = (2 + 1, 3 + 3) = (3, 6); normalised = (3, 6) / sqrt(45)
    np.testing.assert_allclose(
        head.dense_embeddings(layer4).flatten().numpy(), np.array([3.0, 6.0]) / np.sqrt(45), rtol=1e-6
    )
    with pytest.raises(ValueError, match="attention-pool projections"):
        _head(text, dense="maskclip")


def test_unknown_dense_mode_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'depthclip', 'maskclip'"):
        _head(torch.eye(3), dense="mean")


def test_softmax_runs_in_float32_under_autocast():
    """Logits reach 1000 * cos: in bfloat16 / float16 the softmax would round to the wrong bin mix."""
    text = torch.tensor([[1.0, 0.0], [0.9995, 0.0316]])  # two classes 0.0005 apart in cosine
    layer4 = torch.tensor([1.0, 0.0, 0.0, 0.0]).reshape(1, 4, 1, 1)
    head = DepthCLIPHead(text_embeddings=text, bins=(1.0, 2.0), temperature=0.1)
    want = head(layer4).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = head(layer4.bfloat16())
    assert got.dtype == torch.float32 and got.item() == pytest.approx(want, rel=1e-6)
    assert 1.3 < want < 1.5  # 1000 * 0.0005 = 0.5 logit apart: p = (0.62, 0.38)


def test_head_artifact_round_trip(tmp_path):
    text = torch.nn.functional.normalize(torch.randn(3, 2), dim=-1)
    proj = {
        "v_weight": torch.randn(4, 4),
        "v_bias": torch.randn(4),
        "c_weight": torch.randn(2, 4),
        "c_bias": torch.randn(2),
    }
    head = _head(text, dense="maskclip", projections=proj)
    path = save_head(tmp_path / "head.safetensors", head, weights={"model": "RN50-quickgelu"})
    again = load_head(path)
    assert again.dense == "maskclip" and again.temperature == 0.1
    layer4 = torch.randn(1, 4, 2, 3)
    torch.testing.assert_close(again(layer4), head(layer4), rtol=0, atol=0)
    save_head(tmp_path / "again.safetensors", again, weights={"model": "RN50-quickgelu"})
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()  # deterministic bytes


class _Identity(torch.nn.Module):
    """A 'head' whose depth is channel 0 of its input, to test the geometry around it."""

    def forward(self, x):
        return x[:, :1]


def test_flip_averaging_flips_the_mirror_prediction_back():
    a = torch.arange(6.0).reshape(1, 1, 2, 3)
    b = torch.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]]).reshape(1, 1, 2, 3)
    out = zeroshot_depth(_Identity(), torch.stack([a, b], dim=1))
    # bilinear align_corners upsampling keeps the corners: top-left = (a[0,0] + b[0,2]) / 2
    assert out[0, 0, 56, 60].item() == pytest.approx((0.0 + 30.0) / 2)
    assert out[0, 0, 471, 603].item() == pytest.approx((5.0 + 40.0) / 2)


def test_paste_geometry_and_bilinear_align_corners():
    ramp = torch.arange(17.0).reshape(1, 1, 1, 17).repeat(1, 1, 13, 1)  # 13 x 17 layer4 grid
    pair = torch.stack([ramp, ramp.flip(-1)], dim=1)  # mirror prediction of a ramp, so the average is the ramp
    out = zeroshot_depth(_Identity(), pair)[0, 0]
    assert out.shape == (480, 640)
    assert out[:56].abs().sum() == 0 and out[472:].abs().sum() == 0
    assert out[:, :60].abs().sum() == 0 and out[:, 604:].abs().sum() == 0
    # align_corners=True: column 60 + j of the crop maps to grid x = j * 16 / 543, exactly linear
    expected = np.arange(544) * 16 / 543
    np.testing.assert_allclose(out[56].numpy()[60:604], expected, atol=1e-4)
    np.testing.assert_allclose(out[471].numpy()[60:604], expected, atol=1e-4)


def test_zeroshot_depth_rejects_single_view():
    with pytest.raises(ValueError, match="B x 2 x C x h x w"):
        zeroshot_depth(_Identity(), torch.zeros(1, 4, 13, 17))

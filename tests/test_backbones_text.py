"""The zoo's open_clip backbones with an attention-pooled image tower and a text tower (SigLIP 2 ViT-B/16, PE-Core
B/16): layer shapes, the canonical geometry by arithmetic, seeded informative random init, agreement with open_clip's
own forward, the dense path against the pooled embedding, strict loading, the published file layouts, the text
towers, and DepthCLIP's zero-shot head through each.

Each model (375 M and 448 M parameters, both towers) is built once per module; torch runs one thread.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import block_outputs, make_params
from published_weights_text import meta_pe_release, timm_image_tower

from depthcore.features.head import build_vit_head
from depthcore.models.backbones.zoo import pe_core, siglip2
from depthcore.models.backbones.zoo._vit import tokens_to_map
from depthcore.models.backbones.zoo.base import CLS_SUFFIX, CROP_SIZE, BackboneError, seeded
from depthcore.models.backbones.zoo.registry import BACKBONES, backbone_facts, backbone_spec, build_backbone
from depthcore.models.heads.depthclip import zeroshot_depth

NAMES = ("siglip2_vitb16", "pe_core_b16")
EMBED = {"siglip2_vitb16": 768, "pe_core_b16": 1024}
TINY = (32, 48)  # network input: a 2 x 3 grid
TINY_GRID = (TINY[0] // 16, TINY[1] // 16)
TWO_CLASSES = {"depthclip.classes": ["close", "far"], "depthclip.bins": [1.0, 3.0]}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(name: str, seed: int = 0, state_dict=None):
    cfg = BACKBONES.get(name).config(pretrained="none", init_seed=seed, layers=("block1",))
    return build_backbone(name, cfg=cfg, state_dict=state_dict)


@pytest.fixture(scope="module")
def zoo(one_torch_thread):
    rng = torch.random.get_rng_state()
    built = {name: build(name) for name in NAMES}
    assert torch.equal(torch.random.get_rng_state(), rng)  # the seeded builds leave the global RNG alone
    return built


def images(backbone, size) -> torch.Tensor:
    """2 x 3 x H x W normalised: a smooth random texture and a vertical edge over a ramp."""
    height, width = size
    texture = F.interpolate(torch.rand(1, 3, 2, 3, generator=torch.Generator().manual_seed(7)), size=size)
    edge = torch.linspace(0.2, 0.6, height)[None, None, :, None].expand(1, 3, height, width).clone()
    edge[..., width // 2 :] += 0.4
    return backbone.normalise(torch.cat([texture, edge]))


def features(backbone, x, layers=None):
    with torch.no_grad():
        return backbone.forward_features(x, backbone.layers if layers is None else layers)


GEMMA_WORDS = ("this", "object", "is", "close", "far", "a")  # the stand-in vocabulary's whole words
GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")  # ids 0..3, as Gemma's


def gemma_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A tiny Gemma-like BPE vocabulary: the specials, single characters, and every '▁'-prefixed word of
    GEMMA_WORDS built left to right by one merge per character."""
    vocab = {token: index for index, token in enumerate(GEMMA_SPECIALS)}
    merges: list[tuple[str, str]] = []
    for word in GEMMA_WORDS:
        piece = "▁" + word
        for char in piece:
            vocab.setdefault(char, len(vocab))
        for end in range(2, len(piece) + 1):
            if piece[:end] not in vocab:
                merges.append((piece[: end - 1], piece[end - 1]))
                vocab[piece[:end]] = len(vocab)
    return vocab, merges


def write_gemma_tokenizer(folder, *, config: dict | None = None):
    """A stand-in of SigLIP 2's tokenizer.json in Gemma's format (normaliser: prepend '▁', spaces -> '▁'; no
    pre-tokenizer; BPE with unknowns fused to <unk>; post-processor '$A <eos>'), written with the tokenizers
    library; ``config``: a tokenizer_config.json beside it."""
    import json

    from tokenizers import Tokenizer, models, normalizers, processors

    vocab, merges = gemma_vocabulary()
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.post_processor = processors.TemplateProcessing(single="$A:0 <eos>:0", special_tokens=[("<eos>", 1)])
    tok.add_special_tokens(list(GEMMA_SPECIALS))
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def by_hand(words: list[str], *, bos: bool = False, length: int = siglip2.CONTEXT_LENGTH) -> list[int]:
    """Ids of already canonical words: [<bos>] words <eos>, padded with <pad> (0) to ``length``."""
    vocab, _ = gemma_vocabulary()
    ids = [vocab["<bos>"]] * bos + [vocab["▁" + word] for word in words] + [vocab["<eos>"]]
    return ids + [vocab["<pad>"]] * (length - len(ids))


@pytest.fixture(scope="module")
def gemma_folder(tmp_path_factory):
    return write_gemma_tokenizer(tmp_path_factory.mktemp("siglip2_tokenizer"))


# ------------------------------------------------------------------------------------------ contract and geometry
@pytest.mark.parametrize("name", NAMES)
def test_contract_shapes_and_canonical_grid(zoo, name):
    backbone, facts = zoo[name], backbone_facts(name)
    assert set(NAMES) <= set(BACKBONES.names())
    assert backbone.layers == facts.layers == (*(f"block{k}" for k in range(1, 13)), "dense")
    assert (
        (backbone.class_token, backbone.text, backbone.zeroshot_layer)
        == (
            facts.class_token,
            True,
            "dense",
        )
        == (name == "pe_core_b16", True, "dense")
    )
    assert backbone.embed_dim == EMBED[name]
    assert {k: v.channels for k, v in backbone.layer_specs.items()} == {
        **{f"block{k}": 768 for k in range(1, 13)},
        "dense": EMBED[name],
    }
    crop = torch.rand(1, 3, *CROP_SIZE)
    x = backbone.preprocess(crop)
    torch.testing.assert_close(x, (crop - 0.5) / 0.5)  # no resize; both models' mean = std = 0.5
    assert backbone.input_size == (416, 544) == tuple(x.shape[-2:])
    assert all(spec.grid == (416 // 16, 544 // 16) == (26, 34) and spec.stride == 16 for spec in
               backbone.layer_specs.values())  # fmt: skip
    feats = features(backbone, images(backbone, TINY))
    expected = [k for layer in backbone.layers for k in ((layer, layer + CLS_SUFFIX)
                if backbone.class_token and layer != "dense" else (layer,))]  # fmt: skip
    assert list(feats) == expected
    for layer, spec in backbone.layer_specs.items():
        assert feats[layer].shape == (2, spec.channels, TINY[0] // 16, TINY[1] // 16)
    with pytest.raises(BackboneError, match="multiples of 16"):
        backbone.forward_features(torch.zeros(1, 3, 33, 48), ("block1",))
    with pytest.raises(BackboneError, match="416 x 544 crop or the B x 3 x 480 x 640 frame"):
        backbone.preprocess(torch.rand(1, 3, 480, 600))
    assert backbone.preprocess(torch.rand(1, 3, 480, 640)).shape[-2:] == (480, 640)  # the frame: 30 x 40 patches
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.train().training


def test_position_embeddings_follow_each_models_own_resampling(zoo):
    from timm.layers import resample_abs_pos_embed

    sig, pe = zoo["siglip2_vitb16"], zoo["pe_core_b16"]
    table = sig.trunk.pos_embed  # 1 x 196 x 768, no class entry
    expected = resample_abs_pos_embed(table, new_size=(26, 34), old_size=(14, 14), num_prefix_tokens=0)
    torch.testing.assert_close(sig.position_embedding((26, 34)), expected, rtol=0, atol=1e-6)
    table = pe.trunk.pos_embed  # 1 x 197 x 768, the class entry first
    grid = F.interpolate(table[:, 1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2), size=(26, 34), mode="bilinear")
    expected = torch.cat([table[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)
    torch.testing.assert_close(pe.position_embedding((26, 34)), expected, rtol=0, atol=0)
    # RoPE: timm's own table at the 14 x 14 grid; elsewhere the integer positions (+1), not rescaled to 14 x 14
    rope = pe.trunk.rope
    torch.testing.assert_close(pe.rope_embedding((14, 14)), rope.get_embed(), rtol=0, atol=1e-6)
    wide = pe.rope_embedding((2, 30))  # positions 1..30 along x: the 14 x 14 table's x-frequencies repeat there
    assert rope.ref_feat_shape is not None and wide.shape == (60, rope.get_embed().shape[1])
    torch.testing.assert_close(wide[:14].reshape(14, -1), rope.get_embed()[:14], rtol=0, atol=1e-6)


def test_recomputed_buffers_are_the_librarys(zoo):
    """The models are built on the meta device and their non-persistent buffers recomputed: PE's RoPE tables equal
    those of timm's own model built normally (one block), its text tower's mask is the causal mask."""
    import timm

    built = timm.create_model("vit_pe_core_base_patch16_224", pretrained=False, depth=1)
    ours = dict(zoo["pe_core_b16"].trunk.rope.named_buffers())
    assert ours.keys() == dict(built.rope.named_buffers()).keys() and ours
    assert all(torch.equal(ours[k], v) for k, v in built.rope.named_buffers())
    causal = torch.full((32, 32), float("-inf")).triu(1)
    assert torch.equal(zoo["pe_core_b16"].clip.text.attn_mask, causal)
    assert not any(True for _ in zoo["siglip2_vitb16"].clip.buffers())


# ------------------------------------------------------------------------------------------ random init
@pytest.mark.parametrize("name", NAMES)
def test_random_init_is_informative_and_seeded(zoo, name):
    backbone = zoo[name]
    feats = features(backbone, images(backbone, TINY))
    previous = None
    for key, value in feats.items():
        assert torch.isfinite(value).all() and 0.2 < value.std().item() < 20, key
        assert (value[0] - value[1]).std() > 0.1 * value.std(), key  # follows the image
        if key.endswith(CLS_SUFFIX):
            continue
        assert value.flatten(2).std(dim=2).mean() > 0.1 * value.std(), key  # varies across positions
        if previous is not None and previous.shape == value.shape:
            assert F.cosine_similarity(previous.flatten(), value.flatten(), dim=0) < 0.999, key
        previous = value
    assert all(torch.equal(v, feats[k]) for k, v in features(backbone, images(backbone, TINY)).items())
    # The builder's first draws are the patch embedding's weights (the first conv of the model), from init_seed:
    # drawn again under seed 0 they are the same, under seed 1 others.
    proj = backbone.trunk.patch_embed.proj.weight
    for seed in (0, 1):
        again = torch.empty_like(proj)
        bound = (3 / proj[0].numel()) ** 0.5  # U(-a, a) with variance 1 / fan_in
        with seeded(seed):
            torch.nn.init.uniform_(again, -bound, bound)
        assert torch.equal(again, proj) == (seed == 0)


# ------------------------------------------------------------------------------------------ open_clip agreement
@pytest.mark.parametrize("name", NAMES)
def test_blocks_and_pooled_embedding_are_open_clips_at_224(zoo, name):
    """At 224 x 224 (the training grid: no resampling) every block is open_clip's own (hooks while
    ``encode_image`` runs), and the pool of our final tokens is ``encode_image``."""
    backbone = zoo[name]
    x = images(backbone, (224, 224))[:1]
    feats = features(backbone, x)
    _, outputs, pooled = block_outputs(backbone.trunk.blocks, lambda: backbone.clip.encode_image(x))
    skip = 1 if backbone.class_token else 0
    for k, out in enumerate(outputs, start=1):
        torch.testing.assert_close(feats[f"block{k}"], tokens_to_map(out[:, skip:], (14, 14)), rtol=0, atol=1e-5)
        if skip:
            torch.testing.assert_close(feats[f"block{k}_cls"], out[:, 0], rtol=0, atol=1e-5)
    with torch.no_grad():
        final = backbone.trunk.norm(outputs[-1])
        ours = backbone.project(backbone.trunk.attn_pool(final))
    torch.testing.assert_close(ours, pooled, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_dense_is_the_attention_pool_of_a_single_token(zoo, name):
    """``dense`` at a token equals open_clip's pooled embedding of a sequence holding that token alone (the
    softmax over one key is 1): timm's own pooled path (``forward_head``: attention pool, fc_norm, head) on that
    token alone, then open_clip's head. Written out by hand too: the value half of kv, the output projection, the
    pool's MLP residual, the head."""
    backbone = zoo[name]
    x = images(backbone, TINY)
    feats = features(backbone, x)
    outputs, _, _ = backbone.tokens(x, len(backbone.trunk.blocks) - 1)
    skip, pool = (1 if backbone.class_token else 0), backbone.trunk.attn_pool
    with torch.no_grad():
        final = backbone.trunk.norm(outputs[-1])[:, skip:]  # B x 6 x 768: the patch tokens
        for j in range(final.shape[1]):
            alone = backbone.clip.visual.head(backbone.trunk.forward_head(final[:, j : j + 1]))
            torch.testing.assert_close(feats["dense"].flatten(2)[..., j], alone, rtol=0, atol=1e-5)
        value = final @ pool.kv.weight[768:].T + pool.kv.bias[768:]
        y = value @ pool.proj.weight.T + pool.proj.bias
        h = F.layer_norm(y, (768,), pool.norm.weight, pool.norm.bias, pool.norm.eps)
        y = y + F.gelu(h @ pool.mlp.fc1.weight.T + pool.mlp.fc1.bias) @ pool.mlp.fc2.weight.T + pool.mlp.fc2.bias
        head = backbone.trunk.head
        by_hand = y @ head.weight.T + head.bias if isinstance(head, torch.nn.Linear) else y
    torch.testing.assert_close(feats["dense"], tokens_to_map(by_hand, TINY_GRID), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("name", NAMES)
def test_published_layouts_convert_and_load_strictly(zoo, name):
    backbone = zoo[name]
    state = backbone.library_model.state_dict()
    convert = backbone_spec(name).convert_state_dict
    files = {"open_clip": state, "wrapped": {"state_dict": {f"module.{k}": v for k, v in state.items()}}}
    if name == "pe_core_b16":
        files["meta"] = meta_pe_release(state)
        files["meta (weights entry)"] = {f"weights.{k}": v for k, v in files["meta"].items()}
        assert "visual.conv1.weight" in files["meta"] and "token_embedding.weight" in files["meta"]
    for label, published in files.items():
        converted = convert(published)
        assert converted.keys() == state.keys(), label
        assert all(converted[k] is state[k] or torch.equal(converted[k], state[k]) for k in state), label
        assert convert(converted).keys() == converted.keys()  # idempotent
    with pytest.raises(BackboneError, match="no visual.trunk.* entries.*keys are timm's"):
        convert(timm_image_tower(state))
    loaded = build(name, seed=1, state_dict=convert(files.get("meta", state)))
    x = images(backbone, TINY)
    expected = features(backbone, x)
    assert all(torch.equal(v, expected[k]) for k, v in features(loaded, x).items())
    del loaded
    broken = dict(state)
    first = sorted(broken)[0]
    del broken[first]
    with pytest.raises(BackboneError, match=rf"missing key\(s\) \['{first}'\]"):
        build(name, state_dict=broken)


def test_releases():
    for name, tags in (("siglip2_vitb16", ["official"]), ("pe_core_b16", ["official", "meta"])):
        releases = backbone_spec(name).releases
        assert [r.tag for r in releases] == tags
        assert all(r.licence == "Apache-2.0" and r.citation and r.url.startswith("https://huggingface.co/")
                   for r in releases)  # fmt: skip
    official = backbone_spec("siglip2_vitb16").releases[0]
    assert official.url.endswith("timm/ViT-B-16-SigLIP2/resolve/main/open_clip_model.safetensors")
    import open_clip

    for name, (model, tag) in {
        "siglip2_vitb16": ("ViT-B-16-SigLIP2", "webli"),
        "pe_core_b16": ("PE-Core-B-16", "meta"),
    }.items():
        repo = open_clip.pretrained.get_pretrained_cfg(model, tag)["hf_hub"].strip("/")
        assert (
            backbone_spec(name).releases[0].url
            == f"https://huggingface.co/{repo}/resolve/main/open_clip_model.safetensors"
        )
    meta = backbone_spec("pe_core_b16").releases[1]
    assert meta.url.endswith("facebook/PE-Core-B16-224/resolve/main/PE-Core-B16-224.pt") and meta.format == "torch"


# ------------------------------------------------------------------------------------------ text and zero-shot
@pytest.mark.parametrize("name", NAMES)
def test_text_tower_and_zero_shot_head_end_to_end(zoo, name, monkeypatch, gemma_folder):
    """The prompts' embeddings are open_clip's ``encode_text`` of the model's tokens, normalised; the DepthCLIP
    head built from them reads ``dense`` and predicts depth within the bins on a tiny image and its mirror.
    SigLIP 2: its own tokenizer class over a stand-in Gemma tokenizer.json (ids by hand)."""
    backbone = zoo[name]
    cfg = make_params(TWO_CLASSES).depthclip
    prompts = ["This object is close", "This object is far"]
    if name == "siglip2_vitb16":
        monkeypatch.setattr(backbone, "tokenize", siglip2.GemmaTokenizer(gemma_folder))
        tokens = torch.tensor([by_hand(["this", "object", "is", "close"]), by_hand(["this", "object", "is", "far"])])
    else:
        import open_clip

        tokens = open_clip.get_tokenizer("PE-Core-B-16")(prompts)
        assert tokens.shape == (2, 32) and tokens[0, 0] == 49406  # CLIP BPE: start of text
    calls = []
    encode = backbone.clip.encode_text

    def spy(ids, normalize=False):  # open_clip's encode_text, recording what it was given and gave
        out = encode(ids, normalize=normalize)
        calls.append((ids, out))
        return out

    monkeypatch.setattr(backbone.clip, "encode_text", spy)
    head = build_vit_head(backbone=backbone, cfg=cfg)
    ((ids, raw),) = calls
    assert torch.equal(ids, tokens)  # the model's own tokenizer
    torch.testing.assert_close(head.text, raw / raw.norm(dim=-1, keepdim=True), rtol=0, atol=1e-6)  # normalised
    assert head.text.shape == (2, EMBED[name]) and head.dense == "embedded"
    x = images(backbone, TINY)
    pair = torch.stack([features(backbone, x[:1], ("dense",))["dense"][0],
                        features(backbone, x[:1].flip(-1), ("dense",))["dense"][0]])[None]  # fmt: skip
    depth = zeroshot_depth(head, pair)
    inside = depth[0, 0, 56:472, 60:604]
    assert depth.shape == (1, 1, 480, 640) and ((inside >= 1.0 - 1e-5) & (inside <= 3.0 + 1e-5)).all()
    assert inside.std() > 0  # the depth follows the image


def test_siglip2_tokenizer_refuses_in_one_line_without_its_files(tmp_path):
    tokenizer = siglip2.GemmaTokenizer(tmp_path / "tok")
    with pytest.raises(BackboneError, match=r"download tokenizer.json .* of huggingface.co/timm/ViT-B-16-SigLIP2") as e:
        tokenizer(["a close object"])
    assert "\n" not in str(e.value) and str(tmp_path / "tok") in str(e.value)


def test_siglip2_tokenizer_ids_are_open_clips_rule(gemma_folder, tmp_path):
    """open_clip's HFTokenizer(clean='canonicalize', context_length=64) over the stand-in file, ids by hand:
    punctuation and case removed, unknown words fused to <unk>, <eos> appended, <pad> (0) to 64; a long text cut
    to 63 words + <eos>; tokenizer_config.json's add_bos_token / add_eos_token decide where given."""
    vocab, _ = gemma_vocabulary()
    tokenizer = siglip2.GemmaTokenizer(gemma_folder)
    ids = tokenizer(["This  object_is CLOSE!", "A far, far object.", "Quux close"])
    assert ids.dtype == torch.long and ids.shape == (3, 64)
    assert ids[0].tolist() == by_hand(["this", "object", "is", "close"])
    assert ids[1].tolist() == by_hand(["a", "far", "far", "object"])
    unknown = [vocab["▁"], vocab["<unk>"], vocab["▁close"], vocab["<eos>"]]  # 'quux': '▁' then 4 unknowns fused
    assert ids[2].tolist() == unknown + [0] * 60
    long = tokenizer(["far " * 70])[0].tolist()
    assert long == [vocab["▁far"]] * 63 + [vocab["<eos>"]]
    both = write_gemma_tokenizer(tmp_path / "bos", config={"add_bos_token": True, "add_eos_token": True})
    assert siglip2.GemmaTokenizer(both)(["is far"])[0].tolist() == by_hand(["is", "far"], bos=True)


def test_params_route_the_zero_shot_head_to_both():
    from depthcore.weights.backbone import selected_settings

    for name in NAMES:
        overrides = {"backbone": name, f"backbones.{name}.pretrained": "none", "adapter": "linear_probe"}
        params = make_params(overrides | {"adapters.linear_probe.class_token": name == "pe_core_b16"})
        assert getattr(params.backbones, name).layers == ("block3", "block6", "block9", "block12")
        assert selected_settings(params)["model"] == name and backbone_facts(name).text
    assert pe_core.VARIANT.absolute_rope and not siglip2.VARIANT.absolute_rope


def test_weights_files_convert_on_the_fetch_stages_route(tmp_path):
    """state_dict_of (what every fetch route and stage reads a weights file with): Meta's PE .pt (torch.save) and
    open_clip's safetensors convert, the written safetensors converts to itself, timm's image-only file is refused."""
    from safetensors.torch import save_file

    from depthcore.errors import DepthcoreError
    from depthcore.weights.backbone import state_dict_of

    weight = torch.arange(6.0).reshape(2, 3)
    meta = {
        "visual.conv1.weight": weight,
        "visual.attn_pool.attn.in_proj_bias": torch.arange(6.0),  # q, k, v packed: 2 channels each
        "visual.transformer.resblocks.0.ln_1.weight": weight + 1,
        "token_embedding.weight": weight + 2,
        "logit_scale": torch.tensor(2.0),
    }
    torch.save(meta, tmp_path / "PE-Core-B16-224.pt")
    converted = state_dict_of("pe_core_b16", tmp_path / "PE-Core-B16-224.pt")
    assert sorted(converted) == [
        "logit_scale",
        "text.token_embedding.weight",
        "visual.trunk.attn_pool.kv.bias",
        "visual.trunk.attn_pool.q.bias",
        "visual.trunk.blocks.0.norm1.weight",
        "visual.trunk.patch_embed.proj.weight",
    ]
    assert converted["visual.trunk.attn_pool.q.bias"].tolist() == [0.0, 1.0]
    assert converted["visual.trunk.attn_pool.kv.bias"].tolist() == [2.0, 3.0, 4.0, 5.0]
    save_file({k: v.contiguous() for k, v in converted.items()}, str(tmp_path / "pe.safetensors"))  # as the stage
    assert state_dict_of("pe_core_b16", tmp_path / "pe.safetensors").keys() == converted.keys()
    save_file(
        {"visual.trunk.pos_embed": weight, "text.token_embedding.weight": weight + 1}, str(tmp_path / "s.safetensors")
    )
    assert sorted(state_dict_of("siglip2_vitb16", tmp_path / "s.safetensors")) == [
        "text.token_embedding.weight",
        "visual.trunk.pos_embed",
    ]
    save_file({"patch_embed.proj.weight": weight, "attn_pool.latent": weight + 1}, str(tmp_path / "timm.safetensors"))
    for name in NAMES:
        with pytest.raises(DepthcoreError, match="no visual.trunk.* entries.*keys are timm's"):
            state_dict_of(name, tmp_path / "timm.safetensors")


def test_the_fetch_stage_records_the_tokenizer_files_so_a_new_one_reruns_the_text_stages(tmp_path, monkeypatch):
    """weights.json holds the SHA-256 of SigLIP 2's hand-placed tokenizer files (None while absent): replacing one
    changes the fetch stage's output, which the clip_head and zeroshot stages depend on."""
    import hashlib
    import json

    from depthcore.weights.backbone import fetch_backbone_weights, selected_settings

    monkeypatch.chdir(tmp_path)
    params = {"backbone": "siglip2_vitb16", "adapter": "linear_probe", "adapters.linear_probe.class_token": False}
    selected = selected_settings(make_params(params))

    def side_files() -> dict:
        manifest = fetch_backbone_weights(
            selected,
            tmp_path / "out",
            local_dir=tmp_path / "weights/backbone",
            downloads=tmp_path / "dl",
            progress=False,
        )
        return json.loads(manifest.read_text())["side_files"]

    assert side_files() == dict.fromkeys(siglip2.SIDE_FILES)
    folder = write_gemma_tokenizer(tmp_path / siglip2.TOKENIZER_DIR)
    data = (folder / "tokenizer.json").read_bytes()
    recorded = side_files()
    assert (
        recorded[siglip2.SIDE_FILES[0]] == hashlib.sha256(data).hexdigest() and recorded[siglip2.SIDE_FILES[1]] is None
    )
    (folder / "tokenizer.json").write_bytes(data + b"\n")
    assert side_files()[siglip2.SIDE_FILES[0]] == hashlib.sha256(data + b"\n").hexdigest()

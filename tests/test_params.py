"""The whole params.yaml is one typed object: every error names its dotted key before any work, values
pass through unchanged, and defaults live in params.yaml only."""

from __future__ import annotations

import re
import typing

import pytest
from conftest import REPO, default_raw, make_params
from pydantic import BaseModel

from depthcore.config.params import ConfigError, Params, load_params, validate_params, with_overrides
from depthcore.section import Section


def refuse(overrides: dict, message: str, *, offline: bool = True) -> None:
    with pytest.raises(ConfigError, match=message):
        make_params(overrides, offline=offline)


def test_repository_params_are_valid_and_pass_through_unchanged():
    raw = default_raw()
    params = load_params(REPO / "params.yaml")
    assert params.model_dump(mode="json") == raw  # nothing added, dropped or transformed


def sections(model: type[BaseModel]):
    yield model
    for field in model.model_fields.values():
        for tp in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                yield from sections(tp)


def test_no_section_holds_a_default():
    for model in sections(Params):
        assert issubclass(model, Section)
        with_default = [name for name, f in model.model_fields.items() if not f.is_required()]
        assert not with_default, f"{model.__name__} has defaults for {with_default}: params.yaml is the one place"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.source": "kitti"}, r"params 'data.source': unknown value 'kitti'; valid values are \['nyuv2', "),
        ({"data.synthetic.images": "many"}, r"params 'data.synthetic.images': .*valid integer.*'many'"),
        ({"train.lr": -1}, r"params 'train.lr': input should be greater than 0, got -1"),
        ({"clip.cache_layers": ["layer5"]}, r"params 'clip.cache_layers.0': unknown value 'layer5'"),
        ({"adapter": "dpt"}, r"params 'adapter': unknown value 'dpt'; valid values are \[.*'msa'\]"),
        ({"train.amp": "yes please"}, r"params 'train.amp'"),
        ({"adapters.clip_adapter.image": False, "adapters.clip_adapter.text": False}, "nothing would be trained"),
        ({"presets.msa.momentum": None}, r"params 'presets.msa': \['momentum'\] must be set exactly when used"),
        ({"presets.linear_probe.gamma": 0.5}, r"params 'presets.linear_probe': \['gamma'\] must be set exactly"),
        ({"presets.eigen.refine.lr": 0}, r"params 'presets.eigen.refine.lr': input should be greater than 0"),
    ],
)
def test_bad_values_name_the_dotted_key(overrides, message):
    refuse(overrides, message)


def test_unknown_keys_anywhere_are_refused_with_the_valid_keys():
    raw = default_raw() | {"trian": {"lr": 1}}
    with pytest.raises(ConfigError, match=r"params 'trian': unknown key; valid keys are \['adapter', "):
        validate_params(raw)
    raw = default_raw()
    raw["data"]["synthetic"]["height"] = 240  # synthetic rooms are always 480 x 640
    with pytest.raises(ConfigError, match=r"params 'data.synthetic.height': unknown key; valid keys are \["):
        validate_params(raw)
    with pytest.raises(ConfigError, match=r"params 'train.lrr': unknown key"):
        with_overrides(default_raw(), {"train.lrr": 1})


def test_missing_keys_are_refused():
    raw = default_raw()
    del raw["train"]["lr"]
    with pytest.raises(ConfigError, match=r"params 'train.lr': missing"):
        validate_params(raw)


def test_a_misspelt_key_is_named_before_the_key_it_leaves_missing():
    raw = default_raw()
    raw["train"]["lrr"] = raw["train"].pop("lr")
    with pytest.raises(ConfigError) as caught:
        validate_params(raw)
    first, second = str(caught.value).split("; params ")[:2]
    assert first.startswith("params 'train.lrr': unknown key") and second.startswith("'train.lr': missing")


def test_a_number_typed_as_a_string_is_the_number_it_means():
    assert make_params({"train.lr": "1e-3"}).train.lr == 0.001


def test_val_fraction_zero_with_select_last_trains_on_every_training_image():
    params = make_params({"data.val_fraction": 0, "train.select": "last"})
    assert params.data.val_fraction == 0 and params.train.select == "last"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.val_fraction": 0}, r"'data.val_fraction' is 0 but 'train.select' is 'val'"),
        (
            {"loss": "ssl", "pairs.method": "dataset", "data.source": "nyuv2"},
            r"'pairs.method' is 'dataset' but .*which loss 'ssl' reads.*homography",
        ),
        ({"data.synthetic.images": 4}, r"2 room\(s\); the splits need at least one test room and 2 training"),
        ({"data.synthetic.images": 2}, r"1 room\(s\)"),
        ({"clip.cache_layers": ["layer3", "layer4"]}, r"adapters.msa' reads the layer\(s\) \['layer2'\]"),
        ({"adapters.msa.segments": "color", "segments.method": "none"}, r"reads a segment map but 'segments.method'"),
        (
            {"data.source": "nyuv2_raw", "adapters.msa.segments": "color", "segments.method": "gt"},
            r"'segments.method' is 'gt' but data.source 'nyuv2_raw' has no object ids",
        ),
        (
            {"loss": "ssl", "pairs.method": "dataset", "data.source": "nyuv2_raw"},
            r"'pairs.method' is 'dataset' but data.source 'nyuv2_raw' has no second views",
        ),
        ({"adapters.msa.segments": "pool"}, r"'pool', which only the narrow decoder has"),
        ({"adapters.msa.layers": ["layer3", "layer4"]}, r"the published decoder skips all five CLIP layers"),
        ({"adapters.coarse_refine.mode": "coarse"}, r"two_stage but 'mode' is coarse: there is no refine stage"),
        ({"eval.max_depth": 0.0005}, r"'eval.max_depth' \(0.0005\) must exceed"),
        ({"depthclip.bins": [1.0, 2.0]}, "7 classes but 2 bins"),
    ],
)
def test_contradicting_sections_are_refused_naming_the_keys(overrides, message):
    refuse(overrides, message)


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        make_params({"train.lr": 0, "data.source": "kitti"})
    assert "train.lr" in str(info.value) and "data.source" in str(info.value)


def test_what_params_yaml_shows_is_what_runs():
    """Every adapter, loss and backbone is listed where params.yaml names the choice, and a published preset's
    settings are params.yaml's presets.<adapter> (each part for a two-phase adapter), not values hidden in code."""
    from depthcore.losses.registry import LOSSES
    from depthcore.models.adapters.registry import ADAPTERS
    from depthcore.models.backbones.zoo.registry import BACKBONES
    from depthcore.training.settings import phase_settings

    lines = (REPO / "params.yaml").read_text().splitlines()
    for key, registry in (("adapter", ADAPTERS), ("loss", LOSSES), ("backbone", BACKBONES)):
        comment = next(line for line in lines if line.startswith(f"{key}:")).split("#", 1)[1]
        assert set(registry.names()) <= set(re.findall(r"[a-z0-9_]+", comment)), (key, comment)
    raw = default_raw()
    for adapter in ADAPTERS.names():
        params = make_params(
            {"adapter": adapter, "backbone": "dinov2_vits14"} if "probe" in adapter else {"adapter": adapter}
        )
        for phase, settings in phase_settings(params).items():
            preset = raw["presets"][adapter]
            preset = preset[params.adapter_config.preset_part(phase)] if params.adapter_config.preset_parts else preset
            assert {k: getattr(settings, k) for k, v in preset.items() if v is not None} == {
                k: v for k, v in preset.items() if v is not None
            }, (adapter, phase)


def test_the_offline_settings_give_every_backbone_random_weights():
    """Offline (make repro-offline, the tests) no backbone of the zoo may reach for a download: each one's
    ``pretrained`` is 'none' (the paper's clip_rn50 through clip.pretrained)."""
    from depthcore.config.offline import OFFLINE
    from depthcore.models.backbones.zoo.registry import BACKBONES

    params = make_params()
    assert OFFLINE["clip.pretrained"] == params.clip.pretrained == "none"
    for name in BACKBONES.names():
        if name != "clip_rn50":
            assert getattr(params.backbones, name).pretrained == "none", name

import pytest

from myjepa.config import parse_overrides, to_dict
from myjepa.errors import UserError
from myjepa.pretrain.config import PretrainConfig, load_config, shipped_configs


def test_vits_has_the_published_values():
    cfg = load_config("ViTS_mimic")
    assert (cfg.dim, cfg.depth, cfg.num_heads) == (384, 8, 6)
    assert (cfg.pred_dim, cfg.pred_depth, cfg.pred_num_heads) == (192, 8, 6)
    assert (cfg.sigreg_lambda, cfg.min_keep_ratio, cfg.max_keep_ratio) == (0.02, 0.15, 0.25)
    assert (cfg.patch_size, cfg.min_block_size, cfg.batch_size, cfg.steps) == (25, 10, 2048, 100000)
    assert (cfg.lr, cfg.min_lr, cfg.warmup_steps) == (1e-3, 1e-6, 10000)
    assert (cfg.weight_decay, cfg.final_weight_decay, cfg.betas) == (1e-2, 1e-1, [0.9, 0.99])
    assert cfg.num_patches == 200


def test_vitxs_and_overrides():
    cfg = load_config("ViTXS_mimic", batch_size=32)
    assert (cfg.dim, cfg.num_heads, cfg.pred_dim, cfg.batch_size) == (192, 4, 96, 32)


def test_every_shipped_config_loads():
    names = shipped_configs()
    assert {"ViTS_mimic", "ViTXS_mimic", "tiny"} <= set(names)
    for name in names:
        assert isinstance(load_config(name), PretrainConfig)


def test_unknown_and_missing_keys_are_named(tmp_path):
    with pytest.raises(UserError, match="unknown key 'batchsize'.*did you mean 'batch_size'"):
        load_config("tiny", batchsize=3)
    data = to_dict(load_config("tiny"))
    del data["sigreg_lambda"]
    path = tmp_path / "c.yaml"
    path.write_text(
        "\n".join(f"{k}: {v!r}".replace("'", "") for k, v in data.items() if k not in ("leads", "datasets"))
        + "\nleads: [I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6]\ndatasets: {a: 1.0}\n"
    )
    with pytest.raises(UserError, match="missing key 'sigreg_lambda'"):
        load_config(path)


def test_wrong_types_and_set_overrides():
    with pytest.raises(UserError, match="'lr'.*expected a number"):
        load_config("tiny", lr="fast")
    overrides = parse_overrides(["steps=50", "betas=[0.9, 0.95]", "datasets={synth: 1}"])
    cfg = load_config("tiny", **overrides)
    assert (cfg.steps, cfg.betas, cfg.datasets) == (50, [0.9, 0.95], {"synth": 1.0})
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["steps"])
    with pytest.raises(UserError, match="not divisible by num_heads"):
        load_config("tiny", num_heads=3)

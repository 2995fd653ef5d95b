"""bf16 autocast, torch.compile and activation checkpointing on the CPU: the same losses and gradients."""

import json
import shutil

import pytest
import torch
from conftest import skip_or_fail, synthetic_ecg, write_dump

import myjepa.pretrain.train as pretrain
from myjepa.models.myjepa import MyJEPA
from myjepa.models.sigreg import SIGReg
from myjepa.pretrain.config import load_config
from myjepa.pretrain.masks import MaskCollator

pytestmark = pytest.mark.usefixtures("single_thread")

# the tiny model on 5 s crops, with one keep ratio so that torch.compile never sees a new shape
SETTINGS = ["channel_size=2500", "batch_size=16", "log_interval=1", "warmup_steps=2"]
SETTINGS += ["min_keep_ratio=0.2", "max_keep_ratio=0.2", "steps=3"]


def losses(dump, out, *flags):
    code = pretrain.main(
        ["--data", f"mimic-iv-ecg={dump}", "--out", str(out), "--config", "tiny", "--device", "cpu", *flags]
        + ["--set", *SETTINGS]
    )
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return torch.tensor([[r[f"train/{k}"] for k in pretrain.LOSSES] for r in rows if "train/loss" in r])


@pytest.fixture(scope="module")
def float32_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("precision")
    dump = write_dump(tmp / "mimic.npy", synthetic_ecg(32, seed=5))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return dump, losses(dump, tmp / "float32")
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize(
    "flags, rtol",
    [
        pytest.param(["--amp", "bfloat16"], 2e-2, id="bf16"),
        pytest.param(["--compile"], 1e-3, id="compile", marks=pytest.mark.slow),
        pytest.param(["--compile", "--amp", "bfloat16"], 2e-2, id="compile-bf16", marks=pytest.mark.slow),
    ],
)
def test_tiny_run_matches_float32(float32_run, tmp_path, flags, rtol):
    """Three steps of the tiny config: every logged loss finite and within rtol of the float32 eager run.
    torch.compile on the CPU needs a C++ compiler: without one the compiled cases skip (fail in CI, which has
    MYJEPA_REQUIRE_COMPILER=1 and installs g++)."""
    if "--compile" in flags and shutil.which("g++") is None and shutil.which("clang++") is None:
        skip_or_fail("torch.compile on the CPU needs a C++ compiler (g++ or clang++)", "MYJEPA_REQUIRE_COMPILER")
    dump, reference = float32_run
    got = losses(dump, tmp_path / "run", *flags)
    assert got.shape == reference.shape == (3, len(pretrain.LOSSES))
    assert got.isfinite().all()
    torch.testing.assert_close(got, reference, rtol=rtol, atol=1e-3)
    if "bfloat16" in flags:
        assert not torch.equal(got, reference)  # autocast did run in bf16


def test_sigreg_stays_float32_under_bf16_autocast():
    """Its cos/sin of t·x and squared differences would lose the signal in bf16: the whole statistic
    runs in float32 even when the projector hands it bf16 embeddings."""
    z = torch.randn(64, 16).bfloat16()
    plain, under_autocast = SIGReg(32, seed=3).eval(), SIGReg(32, seed=3).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = under_autocast(z)
        bf16_matmul = z @ torch.randn(16, 4)
    assert bf16_matmul.dtype == torch.bfloat16  # autocast is on for everything else
    assert value.dtype == torch.float32
    assert torch.equal(value, plain(z.float()))


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    cfg = load_config("tiny", channel_size=1000)
    x = torch.randn(4, 12, 1000)
    ctx, tgt = MaskCollator(25, 5).masks(4, cfg.num_patches, torch.Generator().manual_seed(0))
    grads = []
    for on in (False, True):
        cfg.activation_checkpointing = on
        torch.manual_seed(0)
        model = MyJEPA(cfg)
        loss = model(x, ctx, tgt)["loss"]
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss0, g0), (loss1, g1) = grads
    assert torch.equal(loss0, loss1) and g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-5, atol=1e-7, msg=name)

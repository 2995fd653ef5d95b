"""CUDA checks for benchmarks/gpu.sh (`pytest -m cuda`): each skips where torch sees no GPU."""

import json

import numpy as np
import pytest
import torch
from conftest import synthetic_ecg, write_dump

import myjepa.pretrain.train as pretrain
from myjepa.models.myjepa import MyJEPA
from myjepa.pretrain.batches import CropBatches, SourceNorm, open_sources
from myjepa.pretrain.config import load_config
from myjepa.pretrain.masks import MaskCollator

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
SETTINGS = ["channel_size=2500", "batch_size=16", "log_interval=1", "warmup_steps=2", "steps=3"]
SETTINGS += ["min_keep_ratio=0.2", "max_keep_ratio=0.2", "num_workers=2"]


def losses(dump, out, *flags):
    args = ["--data", f"mimic-iv-ecg={dump}", "--out", str(out), "--config", "tiny", *flags, "--set", *SETTINGS]
    assert pretrain.main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return torch.tensor([[r[f"train/{k}"] for k in pretrain.LOSSES] for r in rows if "train/loss" in r])


def test_bf16_run_on_cuda_matches_float32_on_cpu(tmp_path):
    """Pinned float16 batches from 2 workers, normalised on the GPU, bf16 autocast: the CPU float32 losses."""
    dump = write_dump(tmp_path / "mimic.npy", synthetic_ecg(32, seed=5))
    gpu = losses(dump, tmp_path / "gpu", "--device", "cuda", "--amp", "bfloat16")
    cpu = losses(dump, tmp_path / "cpu", "--device", "cpu", "--amp", "float32")
    assert gpu.isfinite().all()
    torch.testing.assert_close(gpu, cpu, rtol=3e-2, atol=1e-3)


def test_source_norm_on_cuda_equals_the_cpu(tmp_path):
    dump = write_dump(tmp_path / "a.npy", 3 + synthetic_ecg(8, length=3000, seed=2))
    cfg = load_config("tiny", channel_size=2500, datasets={"a": 1.0})
    sources = open_sources([("a", dump)], cfg)
    x, source, _, _ = CropBatches(sources, 16, 2500, MaskCollator(25, 10, 0.15, 0.25), seed=0)[0]
    on_gpu = SourceNorm(sources, "cuda")(x.pin_memory().cuda(non_blocking=True), source.cuda())
    np.testing.assert_allclose(on_gpu.cpu().numpy(), SourceNorm(sources)(x, source).numpy(), rtol=1e-6, atol=1e-6)


def test_activation_checkpointing_lowers_peak_memory_on_cuda():
    cfg = load_config("tiny", dim=256, depth=6, num_heads=4)
    ctx, tgt = MaskCollator(25, 10).masks(64, cfg.num_patches, torch.Generator().manual_seed(0))
    x, ctx, tgt = torch.randn(64, 12, cfg.channel_size, device="cuda"), ctx.cuda(), tgt.cuda()
    peaks = []
    for on in (False, True):
        cfg.activation_checkpointing = on
        model = MyJEPA(cfg).cuda()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x, ctx, tgt)["loss"]
        loss.backward()
        peaks.append(torch.cuda.max_memory_allocated() - base)
        del model, loss
    assert peaks[1] < 0.6 * peaks[0]

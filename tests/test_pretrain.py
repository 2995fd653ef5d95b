import json
import os
import re
import signal

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import synthetic_ecg, write_dump

import myjepa.pretrain.train as pretrain
from myjepa.errors import UserError
from myjepa.models.myjepa import MyJEPA
from myjepa.models.vit import VisionTransformer
from myjepa.pretrain import checkpoints
from myjepa.pretrain.batches import CropBatches, SourceNorm, open_sources
from myjepa.pretrain.config import load_config
from myjepa.pretrain.masks import MaskCollator
from myjepa.release import export

pytestmark = pytest.mark.usefixtures("single_thread")

# fast variant of the tiny config: 100 patches per 5 s crop, small batch
FAST = [
    "channel_size=2500",
    "batch_size=16",
    "log_interval=1",
    "checkpoint_interval=4",
    "best_loss_window=3",
    "warmup_steps=3",
]


def run(tmp_dump, out, *extra, steps=8):
    return pretrain.main(
        [
            "--data",
            f"mimic-iv-ecg={tmp_dump}",
            "--out",
            str(out),
            "--config",
            "tiny",
            "--set",
            *FAST,
            f"steps={steps}",
            *extra,
        ]
    )


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(path):
    return checkpoints.read(path).training.model


def test_run_writes_every_output(small_dump, tmp_path):
    out = tmp_path / "run"
    assert run(small_dump, out, steps=6) == 0
    for name in ("encoder.pt", "best_ckpt.pt", "last_ckpt.pt", "metrics.jsonl", "config.yaml"):
        assert (out / name).is_file(), name
    lines = metrics(out)
    assert [l["step"] for l in lines] == [1, 2, 3, 4, 5, 6]
    for key in (
        "train/loss",
        "train/pred_loss",
        "train/sigreg_loss",
        "train/lr",
        "train/step_time",
        "train/throughput",
        "gradients/norm",
    ):
        assert all(np.isfinite(l[key]) for l in lines), key
    enc = checkpoints.read(out / "encoder.pt")
    assert enc.step == 6 and enc.run.config["channel_size"] == 2500 and enc.run.config["steps"] == 6
    assert enc.training is None and enc.run.options == {"seed": 42, "amp": "float32"}
    assert [d["name"] for d in enc.run.dumps] == ["mimic-iv-ecg"] and set(enc.run.dump_digests) == {"mimic-iv-ecg"}
    encoder = VisionTransformer.from_config(enc.run.encoder_config)
    encoder.load_state_dict(enc.encoder)
    last = checkpoints.read(out / "last_ckpt.pt")
    assert last.step == 6 and last.run == enc.run and last.training.optimizer["state"]
    assert torch.equal(last.training.model["encoder.patch_embed.weight"], enc.encoder["patch_embed.weight"])
    assert load_config(out / "config.yaml").steps == 6  # the resolved config is a valid config file
    assert run(small_dump, out, steps=6) == 0  # a finished run is not trained again
    assert len(metrics(out)) == 6
    (out / "encoder.pt").unlink()  # as Snakemake does before a forced rerun
    assert run(small_dump, out, steps=6) == 0 and len(metrics(out)) == 6
    again = checkpoints.read(out / "encoder.pt")
    assert again.step == 6 and all(torch.equal(again.encoder[k], v) for k, v in enc.encoder.items())


@pytest.mark.parametrize(
    "options",
    [[], ["context_grad_scale=1000", "context_grad_share=0.002"]],
    ids=["default", "context-share"],  # the share's running norms are training state too
)
def test_interrupted_and_resumed_equals_uninterrupted(small_dump, tmp_path, monkeypatch, options):
    assert run(small_dump, tmp_path / "straight", *options, steps=8) == 0
    schedule = pretrain.warmup_cosine

    def preempt_at_step_3(step, *args):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # what SLURM sends before a time limit
        return schedule(step, *args)

    monkeypatch.setattr(pretrain, "warmup_cosine", preempt_at_step_3)
    resumed = tmp_path / "resumed"
    assert run(small_dump, resumed, *options, steps=8) == 128 + signal.SIGTERM
    assert checkpoints.read(resumed / "last_ckpt.pt").step == 4
    with (resumed / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "train/lo')  # a line cut short by a kill mid-write or a full disk
    monkeypatch.setattr(pretrain, "warmup_cosine", schedule)
    assert run(small_dump, resumed, *options, steps=8) == 0
    a, b = weights(tmp_path / "straight" / "last_ckpt.pt"), weights(resumed / "last_ckpt.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert int(b["sigreg.step"]) == 8
    assert [l["step"] for l in metrics(resumed)] == list(range(1, 9))  # no duplicated lines
    assert [l["train/loss"] for l in metrics(resumed)] == [l["train/loss"] for l in metrics(tmp_path / "straight")]
    if options:  # the cap took over from the fixed scale, and the logs say so
        scales = [l["gradients/context_scale"] for l in metrics(resumed)]
        assert scales == [l["gradients/context_scale"] for l in metrics(tmp_path / "straight")]
        assert scales[-1] < 1000 and all(0 < l["gradients/context_ratio"] < 1 for l in metrics(resumed))


def test_resume_with_another_config_is_refused(small_dump, tmp_path):
    out = tmp_path / "run"
    assert run(small_dump, out, steps=2) == 0
    with pytest.raises(UserError, match="different config.*lr"):
        run(small_dump, out, "lr=0.5", steps=4)


def test_a_run_resumes_only_under_its_own_settings(small_dump, tmp_path, capsys):
    """Weights-changing settings (steps: the schedules depend on it; the data) refuse a resume, or
    start afresh with --restart-on-change; bookkeeping keys (log_interval) may change."""
    out = tmp_path / "run"
    assert run(small_dump, out, steps=2) == 0
    with pytest.raises(UserError, match=r"different config \(steps: 2 there, 4 now\).*--restart-on-change"):
        run(small_dump, out, steps=4)
    assert run(small_dump, out, "log_interval=2", "probe_interval=4", "collapse=warn", steps=2) == 0
    assert "nothing to do" in capsys.readouterr().err
    other = write_dump(tmp_path / "other.npy", synthetic_ecg(64, seed=2))
    with pytest.raises(UserError, match=r"different data \(mimic-iv-ecg: "):
        run(other, out, steps=2)

    assert run(small_dump, out, "--restart-on-change", steps=4) == 0
    assert "starting afresh (--restart-on-change)" in capsys.readouterr().err
    assert [line["step"] for line in metrics(out)] == [1, 2, 3, 4]
    fresh = tmp_path / "fresh"
    assert run(small_dump, fresh, steps=4) == 0
    a, b = weights(out / "last_ckpt.pt"), weights(fresh / "last_ckpt.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the restarted run is the fresh run


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(small_dump, tmp_path, monkeypatch, capsys):
    forward = pretrain.MyJEPA.forward
    calls = {"n": 0}

    def nan_from_call_6(self, *args):
        calls["n"] += 1
        out = forward(self, *args)
        if calls["n"] >= 6:
            out = out._replace(loss=out.loss * float("nan"))
        return out

    monkeypatch.setattr(pretrain.MyJEPA, "forward", nan_from_call_6)
    out = tmp_path / "run"
    assert run(small_dump, out, steps=8) == pretrain.EXIT_NONFINITE
    assert "non-finite loss at step 5" in capsys.readouterr().err
    last = checkpoints.read(out / "last_ckpt.pt")
    assert last.step == 4
    assert all(torch.isfinite(v).all() for v in last.training.model.values() if v.is_floating_point())


def test_bad_inputs_are_user_errors(small_dump, tmp_path):
    with pytest.raises(UserError, match="dump not found: .*missing.npy"):
        pretrain.main(["--data", f"x={tmp_path / 'missing.npy'}", "--out", str(tmp_path / "o"), "--config", "tiny"])
    with pytest.raises(UserError, match="NAME=PATH"):
        pretrain.main(["--data", str(small_dump), "--out", str(tmp_path / "o"), "--config", "tiny"])
    with pytest.raises(UserError, match="'other' has no weight"):
        pretrain.main(
            [
                "--data",
                f"mimic-iv-ecg={small_dump}",
                f"other={small_dump}",
                "--out",
                str(tmp_path / "o"),
                "--config",
                "tiny",
            ]
        )
    bad_fs = write_dump(tmp_path / "fs250.npy", synthetic_ecg(4, length=5000), stats={"fs": 250})
    with pytest.raises(UserError, match="fs 250"):
        pretrain.main(["--data", f"a={bad_fs}", "--out", str(tmp_path / "o"), "--config", "tiny"])
    with pytest.raises(UserError, match="not divisible"):
        run(small_dump, tmp_path / "o", "accum_steps=3")


def test_a_config_naming_other_datasets_records_the_dumps_sampled(small_dump, tmp_path, capsys):
    """`--data ptb-xl=...` with a config whose `datasets` name only mimic-iv-ecg trained without a word, and its
    release then reported one set of datasets in its config and another as its data."""
    out = tmp_path / "run"
    argv = ["--data", f"ptb-xl={small_dump}", "--out", str(out), "--config", "tiny", "--set", *FAST, "steps=2"]
    assert pretrain.main(argv) == 0
    assert (
        "pretrain: the config's datasets {'mimic-iv-ecg': 1.0} name none of the --data dumps (ptb-xl): each is "
        "sampled with weight 1; the run records datasets {'ptb-xl': 1.0}\n"
    ) in capsys.readouterr().err
    for name in ("encoder.pt", "last_ckpt.pt"):
        assert checkpoints.read(out / name).run.config["datasets"] == {"ptb-xl": 1.0}
    assert yaml.safe_load((out / "config.yaml").read_text())["datasets"] == {"ptb-xl": 1.0}
    assert export.main(["--encoder", str(out / "encoder.pt"), "--out", str(tmp_path / "release")]) == 0
    release = json.loads((tmp_path / "release" / "config.json").read_text())["pretraining"]
    assert list(release["config"]["datasets"]) == [d["name"] for d in release["data"]] == ["ptb-xl"]
    two = ["--set", "datasets={mimic-iv-ecg: 1.0, ptb-xl: 1.0}"]
    assert run(small_dump, tmp_path / "two", *two, steps=2) == 0  # --data gives mimic-iv-ecg only
    assert "also name ptb-xl, which --data does not give; the run records datasets {'mimic-iv-ecg': 1.0}" in (
        capsys.readouterr().err
    )
    assert checkpoints.read(tmp_path / "two" / "encoder.pt").run.config["datasets"] == {"mimic-iv-ecg": 1.0}


def test_folds_and_weights_select_what_is_sampled(tmp_path):
    """Each record is constant at its row number, so a crop shows which record it came from."""
    n = 20
    rows = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 12, 3000)).copy()
    index = pd.DataFrame(
        {
            "ecg_id": np.arange(1, n + 1),
            "patient_id": 0,
            "strat_fold": np.arange(n) % 10 + 1,
            "scp_codes": "{}",
            "file": "f",
        }
    )
    ptb = write_dump(tmp_path / "ptb.npy", rows, index, stats={"mean": [0.0] * 12, "std": [1.0] * 12})
    other = write_dump(
        tmp_path / "other.npy",
        np.full((5, 12, 3000), -1.0, dtype=np.float32),
        stats={"mean": [0.0] * 12, "std": [1.0] * 12},
    )
    cfg = load_config("tiny", channel_size=2500, folds=[1, 2], datasets={"ptb-xl": 3.0, "other": 1.0})
    sources = open_sources([("ptb-xl", ptb), ("other", other)], cfg)
    assert sources[0].rows.tolist() == [0, 1, 10, 11] and sources[1].rows is None
    batches = CropBatches(sources, 64, cfg.channel_size, MaskCollator(25, 10, 0.15, 0.25), seed=0)
    seen = np.concatenate([batches[s][0][:, 0, 0].numpy() for s in range(10)])
    assert set(seen.tolist()) == {0.0, 1.0, 10.0, 11.0, -1.0}
    assert 0.65 < np.mean(seen >= 0) < 0.85  # weights 3:1
    x, source, ctx, tgt = batches[3]
    assert x.shape == (64, 12, 2500) and x.dtype == torch.float16 and ctx.size(1) + tgt.size(1) == 100
    assert torch.equal(source == 1, x[:, 0, 0] == -1)  # each crop names the dump it came from
    assert torch.equal(batches[3][0], x) and torch.equal(batches[3][1], source)  # a function of (seed, step)
    assert not torch.equal(CropBatches(sources, 64, 2500, MaskCollator(), seed=1)[3][0], x)
    half = CropBatches(sources, 64, 2500, MaskCollator(25, 10, 0.15, 0.25), seed=0, rank=1, world_size=2)[3]
    assert torch.equal(half[0], x[32:]) and torch.equal(half[2], ctx[32:])  # rank 1 of 2: the second half


def test_crops_are_windows_of_their_records_and_normalised_per_dump_on_the_device(tmp_path):
    """Two dumps of different lengths and stats: every crop is a window of some record, and SourceNorm
    z-scores it with its own dump's per-lead mean and std."""
    a, b = synthetic_ecg(6, length=3000, seed=1), 5 + 2 * synthetic_ecg(4, length=2600, seed=2)
    paths = [write_dump(tmp_path / "a.npy", a), write_dump(tmp_path / "b.npy", b)]
    cfg = load_config("tiny", channel_size=2500, datasets={"a": 1.0, "b": 1.0})
    sources = open_sources([("a", paths[0]), ("b", paths[1])], cfg)
    x, source, _, _ = CropBatches(sources, 32, 2500, MaskCollator(25, 10, 0.15, 0.25), seed=1)[0]
    assert set(source.tolist()) == {0, 1}
    for crop, s in zip(x.numpy(), source.tolist()):
        records = np.lib.stride_tricks.sliding_window_view((a, b)[s].astype(np.float16), 2500, axis=2)
        assert (records == crop[None, :, None]).all(axis=(1, 3)).any()
    z = SourceNorm(sources)(x, source)
    for s, signals in enumerate((a, b)):
        mean, std = signals.mean(axis=(0, 2))[:, None], signals.std(axis=(0, 2))[:, None]
        expected = (x[source == s].double().numpy() - mean) / std
        np.testing.assert_allclose(z[source == s].numpy(), expected, rtol=1e-4, atol=1e-4)
    assert z.dtype == torch.float32


def test_a_nan_in_a_dump_stops_the_run_as_a_non_finite_loss(tmp_path, capsys):
    """No per-batch NaN scan on the CPU: a NaN that reaches the model is caught by the non-finite-loss stop."""
    signals = synthetic_ecg(8, seed=4)
    signals[:, 3, 2499:2501] = np.nan  # in every record, inside every 2,500-sample crop
    dump = write_dump(tmp_path / "nan.npy", signals, stats={"mean": [0.0] * 12, "std": [1.0] * 12})
    assert run(dump, tmp_path / "run", steps=2) == pretrain.EXIT_NONFINITE
    assert "non-finite loss at step 1" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_training_lowers_the_loss_without_collapse(tmp_path):
    """The shipped tiny config on synthetic ECG: loss falls, projected embeddings keep their spread."""
    dump = write_dump(tmp_path / "demo.npy", synthetic_ecg(256, seed=3))
    out = tmp_path / "tiny"
    assert (
        pretrain.main(
            [
                "--data",
                f"mimic-iv-ecg={dump}",
                "--out",
                str(out),
                "--config",
                "tiny",
                "--set",
                "steps=40",
                "log_interval=1",
            ]
        )
        == 0
    )
    losses = [l["train/loss"] for l in metrics(out)]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])
    cfg = load_config("tiny")
    model = MyJEPA(cfg)
    model.load_state_dict(weights(out / "last_ckpt.pt"))
    model.eval()
    x = torch.from_numpy(synthetic_ecg(128, seed=99))
    stats = json.loads((tmp_path / "demo.stats.json").read_text())
    x = (x - torch.tensor(stats["mean"])[:, None]) / torch.tensor(stats["std"])[:, None]
    with torch.no_grad():
        z = model.embed(x)
    per_dim_std = z.std(dim=0)
    # at initialisation the smallest is about 0.06 and the mean about 0.1; SIGReg pushes them towards 1
    assert per_dim_std.min() > 0.15 and per_dim_std.mean() > 0.4, per_dim_std


@pytest.mark.parametrize("log_interval", [1, 7])
def test_a_step_to_non_finite_weights_is_never_checkpointed(small_dump, tmp_path, capsys, log_interval):
    """A finite loss can still step to infinite weights (lr 1e6): no checkpoint may hold them."""
    out = tmp_path / "run"
    sets = ["lr=1e6", "checkpoint_interval=1", f"log_interval={log_interval}", "probe_interval=7"]
    assert run(small_dump, out, *sets, steps=60) == pretrain.EXIT_NONFINITE
    err = capsys.readouterr().err
    stopped = re.search(
        r"myjepa: error: non-finite (?:weights after|loss at) step (\d+); stopping, (\S+) holds step (\d+)", err
    )
    assert stopped and "try a lower lr" in err, err
    # the step before the failure was checkpointed (checkpoint_interval=1), and nothing after it
    failed, kept = int(stopped.group(1)), int(stopped.group(3))
    assert stopped.group(2) == str(out / "last_ckpt.pt") and kept == failed - 1 >= 1
    assert checkpoints.read(out / "last_ckpt.pt").step == kept
    for name in ("last_ckpt.pt", "best_ckpt.pt", "encoder.pt"):
        if (out / name).is_file():
            saved = checkpoints.read(out / name)
            tensors = saved.training.model if saved.training else saved.encoder
            assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point()), name

"""End to end on synthetic demo data: an encoder pretrained on synthetic MIMIC-IV-ECG must beat the
random-init encoder on the synthetic PTB-XL rhythm task (linear probe), at two fixed seeds; the online
probe logs its AUC while pretraining runs.

synth -> convert -> pretrain (tiny, online probe on) -> finetune --config linear, pretrained and random init.
"""

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from myjepa.encoders.load import encoder_or_baseline
from myjepa.evaluate.finetune import main as finetune_main
from myjepa.ingest.convert import main as convert_main
from myjepa.pretrain.config import load_config
from myjepa.pretrain.options import ProbeOptions
from myjepa.pretrain.probe import OnlineProbe
from myjepa.pretrain.train import main as pretrain_main
from myjepa.synth.command import main as synth_main

PTBXL_RECORDS, MIMIC_RECORDS, PRETRAIN_STEPS = 600, 1000, 150
PROBE = ["--set", "steps=400", "--set", "eval_interval=50", "--set", "patience=4", "--set", "bootstrap_samples=200"]
MARGIN = 0.03

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    synth_main(
        ["--layout", "ptb-xl", "--out", str(root / "ptb-xl"), "--records", str(PTBXL_RECORDS), "--seed", "0", "--quiet"]
    )
    synth_main(
        [
            "--layout",
            "mimic-iv-ecg",
            "--out",
            str(root / "mimic"),
            "--records",
            str(MIMIC_RECORDS),
            "--seed",
            "1",
            "--quiet",
        ]
    )
    convert_main(["ptb-xl", "--src", str(root / "ptb-xl"), "--out", str(root / "ptb-xl.npy"), "--quiet"])
    convert_main(["mimic-iv-ecg", "--src", str(root / "mimic"), "--out", str(root / "mimic.npy"), "--quiet"])
    pretrain_main(
        [
            "--data",
            f"mimic-iv-ecg={root / 'mimic.npy'}",
            "--out",
            str(root / "pretrain"),
            "--config",
            "tiny",
            "--set",
            f"steps={PRETRAIN_STEPS}",
            "--seed",
            "0",
            "--probe-data",
            str(root / "ptb-xl.npy"),
            "--probe-labels",
            str(root / "ptb-xl"),
        ]
    )
    return root


def linear_auc(demo: Path, encoder: str, seed: int) -> float:
    out = demo / f"linear-{Path(encoder).stem}-{seed}"
    finetune_main(
        [
            "--data-dir",
            str(demo / "ptb-xl"),
            "--dump",
            str(demo / "ptb-xl.npy"),
            "--encoder",
            encoder,
            "--task",
            "rhythm",
            "--config",
            "linear",
            "--out",
            str(out),
            "--seed",
            str(seed),
            *PROBE,
        ]
    )
    return json.loads((out / "results.json").read_text())["test_auc"]


@pytest.mark.parametrize("seed", [0, 1])
def test_pretrained_beats_random_init_on_rhythm(demo, seed):
    pretrained = linear_auc(demo, str(demo / "pretrain" / "encoder.pt"), seed)
    random_init = linear_auc(demo, "tiny", seed)
    print(f"seed {seed}: rhythm test macro AUC pretrained {pretrained:.4f}, random init {random_init:.4f}")
    assert pretrained >= random_init + MARGIN, (
        f"seed {seed}: pretrained {pretrained:.4f} vs random init {random_init:.4f}"
    )


def test_the_online_probe_logs_its_auc_and_never_reads_the_test_fold(demo):
    lines = [json.loads(line) for line in (demo / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    probed = [(line["step"], line["probe/auc"]) for line in lines if "probe/auc" in line]
    interval = load_config("tiny").probe_interval
    assert [step for step, _ in probed] == list(range(0, PRETRAIN_STEPS + 1, interval))  # 0: before training
    assert all(0.5 < auc <= 1.0 for _, auc in probed)
    folds = pd.read_csv(demo / "ptb-xl.index.csv")["strat_fold"].to_numpy()
    cfg = load_config("tiny")
    probe = OnlineProbe(ProbeOptions(demo / "ptb-xl.npy", demo / "ptb-xl", 9, 10), cfg, seed=0)
    assert set(folds[probe.rows["val"]]) == {9} and not np.isin(folds[probe.rows["train"]], [9, 10]).any()
    assert len(probe.rows["train"]) == min(cfg.probe_records, int(np.isin(folds, range(1, 9)).sum()))
    # the last logged AUC is this probe's on the final encoder (encoder.pt): what was logged is what was measured
    final = encoder_or_baseline(demo / "pretrain" / "encoder.pt").encoder
    assert probe(final, contextlib.nullcontext())["probe/auc"] == pytest.approx(probed[-1][1], abs=1e-4)
    print(f"online probe AUC by step: {probed}")
    assert probed[-1][1] > probed[0][1] + 0.05  # pretraining made the rhythm classes easier to read from the embeddings

"""End to end on synthetic demo data: an encoder pretrained on synthetic MIMIC-IV-ECG must beat the
random-init encoder on the synthetic PTB-XL rhythm task (linear probe), at two fixed seeds.

synth -> convert -> pretrain (tiny) -> finetune --config linear, pretrained and random init.
"""

import json
from pathlib import Path

import pytest

from myjepa.evaluate.finetune import main as finetune_main
from myjepa.ingest.convert import main as convert_main
from myjepa.ingest.synth import main as synth_main
from myjepa.pretrain.train import main as pretrain_main

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

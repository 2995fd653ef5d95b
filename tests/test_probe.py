"""The online probe's classifier: it finds a label the embeddings carry, and nothing in shuffled labels."""

import numpy as np
import pytest

import myjepa.pretrain.train as pretrain
from myjepa.errors import UserError
from myjepa.pretrain.probe import probe_auc


def labelled_embeddings(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 32) embeddings and (n, 3) multi-hot labels; class j shifts dimension j by 2."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.3).astype(np.uint8)
    z = rng.normal(size=(n, 32))
    z[:, :3] += 2.0 * y
    return z, y


def test_probe_auc_is_high_when_the_embeddings_carry_the_label_and_chance_when_shuffled():
    train_z, train_y = labelled_embeddings(1000, 0)
    val_z, val_y = labelled_embeddings(300, 1)
    assert probe_auc(train_z, train_y, val_z, val_y) > 0.9
    shuffled = np.random.default_rng(2).permutation(train_y)
    assert abs(probe_auc(train_z, shuffled, val_z, val_y) - 0.5) < 0.08


def test_a_class_without_positives_in_training_scores_half():
    train_z, train_y = labelled_embeddings(200, 0)
    train_y[:, 2] = 0
    val_z, val_y = labelled_embeddings(100, 1)
    auc = probe_auc(train_z, train_y, val_z, val_y)
    assert 0.5 < auc < (1.0 + 1.0 + 0.5) / 3 + 1e-9  # classes 0 and 1 at most 1.0, class 2 exactly 0.5


def test_probe_arguments_are_checked_before_training(small_dump, tmp_path, capsys):
    base = ["--data", f"mimic-iv-ecg={small_dump}", "--out", str(tmp_path / "run"), "--config", "tiny"]
    with pytest.raises(SystemExit) as e:
        pretrain.main([*base, "--probe-data", str(small_dump)])
    assert e.value.code == 2 and "--probe-data and --probe-labels go together" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"--probe-labels .*nowhere: not a folder"):
        pretrain.main([*base, "--probe-data", str(small_dump), "--probe-labels", str(tmp_path / "nowhere")])
    assert not (tmp_path / "run" / "metrics.jsonl").exists()

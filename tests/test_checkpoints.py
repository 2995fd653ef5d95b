"""The checkpoint record: one definition, one key per meaning, and files written before it had a version
(the layouts of myjepa before version 2, built here from a run's own checkpoints) still read, resume and export."""

import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch
from conftest import synthetic_ecg, write_dump
from safetensors.torch import load_file
from test_pretrain import run, weights

import myjepa
import myjepa.pretrain.train as pretrain
from myjepa.errors import UserError
from myjepa.pretrain import checkpoints
from myjepa.pretrain.checkpoints import Checkpoint
from myjepa.release import export

pytestmark = pytest.mark.usefixtures("single_thread")


def as_version_1(ckpt: Checkpoint) -> dict:
    """The dict myjepa wrote before the record had a version: `data` held the stats.json digests in
    last/best_ckpt.pt but the dump summaries in encoder.pt, and encoder.pt's `config` was the encoder's only."""
    run_ = ckpt.run
    if ckpt.training is None:
        return {
            "encoder": ckpt.encoder,
            "config": run_.encoder_config,
            "pretrain_config": run_.config,
            "step": ckpt.step,
            "seed": run_.options["seed"],
            "data": run_.dumps,
        }
    t = ckpt.training
    return {
        "model": t.model,
        "optimizer": t.optimizer,
        "step": ckpt.step,
        "config": run_.config,
        **run_.options,
        "data": run_.dump_digests,
        "sources": run_.dumps,
        "best_loss": t.best_loss,
        "loss_window": t.loss_window,
        "rng": t.rng,
    }


def downgrade(path):
    torch.save(as_version_1(checkpoints.read(path)), path)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped by SIGTERM after step 4 of 8 (last_ckpt.pt and encoder.pt at step 4), and the straight run."""
    root = tmp_path_factory.mktemp("ckpt")
    dump = write_dump(root / "mimic.npy", synthetic_ecg(64, seed=1))
    schedule, threads = pretrain.warmup_cosine, torch.get_num_threads()

    def preempt_at_step_3(step, *args):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return schedule(step, *args)

    torch.set_num_threads(1)  # as the tests that resume run (single_thread): the same sums in the same order
    try:
        assert run(dump, root / "straight", steps=8) == 0
        pretrain.warmup_cosine = preempt_at_step_3
        assert run(dump, root / "stopped", steps=8) == 128 + signal.SIGTERM
    finally:
        pretrain.warmup_cosine = schedule
        torch.set_num_threads(threads)
    return {"dump": dump, "straight": root / "straight", "stopped": root / "stopped"}


def test_every_file_holds_one_record_with_one_key_per_meaning(interrupted):
    out = interrupted["stopped"]
    raw = {name: torch.load(out / name, weights_only=True) for name in ("encoder.pt", "last_ckpt.pt", "best_ckpt.pt")}
    assert sorted(raw["encoder.pt"]) == ["encoder", "run", "step", "version"]
    assert sorted(raw["last_ckpt.pt"]) == sorted(raw["best_ckpt.pt"]) == ["run", "step", "training", "version"]
    assert all(r["version"] == checkpoints.VERSION == 2 for r in raw.values())
    assert sorted(raw["encoder.pt"]["run"]) == ["config", "dump_digests", "dumps", "options"]
    encoder, last = checkpoints.read(out / "encoder.pt"), checkpoints.read(out / "last_ckpt.pt")
    assert encoder.run == last.run and encoder.step == last.step == 4
    assert set(last.encoder) == set(encoder.encoder)
    assert all(torch.equal(last.encoder[k], v) for k, v in encoder.encoder.items())


def test_version_1_files_read_as_the_same_record(interrupted, tmp_path):
    for name in ("encoder.pt", "last_ckpt.pt"):
        new = checkpoints.read(interrupted["stopped"] / name)
        torch.save(as_version_1(new), tmp_path / name)
        old = checkpoints.read(tmp_path / name)
        assert old.version == 1 and old.step == new.step and old.run.config == new.run.config
        assert old.run.dumps == new.run.dumps and old.run.options["seed"] == 42
        assert all(torch.equal(old.encoder[k], v) for k, v in new.encoder.items())
    assert checkpoints.read(tmp_path / "last_ckpt.pt").run == new.run  # last_ckpt.pt recorded everything
    assert checkpoints.read(tmp_path / "encoder.pt").run.dump_digests is None  # encoder.pt never held them


def test_a_version_1_last_ckpt_resumes_bit_for_bit(interrupted, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(interrupted["stopped"], resumed)
    downgrade(resumed / "last_ckpt.pt")
    assert run(interrupted["dump"], resumed, steps=8) == 0
    a, b = weights(interrupted["straight"] / "last_ckpt.pt"), weights(resumed / "last_ckpt.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert checkpoints.read(resumed / "last_ckpt.pt").version == 2  # rewritten in the current layout


def test_a_version_1_encoder_loads_embeds_and_exports_as_before(interrupted, tmp_path):
    current = interrupted["stopped"] / "encoder.pt"
    old = tmp_path / "run" / "encoder.pt"
    old.parent.mkdir()
    torch.save(as_version_1(checkpoints.read(current)), old)
    x = synthetic_ecg(3, length=2500, seed=5)
    np.testing.assert_array_equal(myjepa.load_encoder(old).embed(x, 500), myjepa.load_encoder(current).embed(x, 500))
    assert export.main(["--encoder", str(old), "--out", str(tmp_path / "old_release")]) == 0
    assert export.main(["--encoder", str(current), "--out", str(tmp_path / "new_release")]) == 0
    releases = [tmp_path / "old_release", tmp_path / "new_release"]
    configs = [json.loads((r / "config.json").read_text()) for r in releases]
    for c in configs:  # the names and files differ; safetensors orders its metadata at random
        del c["name"], c["pretraining"]["encoder_sha256"], c["pretraining"]["final_loss"], c["weights"]["sha256"]
    assert configs[0] == configs[1]
    a, b = (load_file(r / "model.safetensors") for r in releases)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_of_another_version_or_shape_is_one_clear_error(interrupted, tmp_path):
    raw = torch.load(interrupted["stopped"] / "encoder.pt", weights_only=True)
    torch.save({**raw, "version": 3}, tmp_path / "future.pt")
    with pytest.raises(UserError, match=r"future.pt: checkpoint version 3; this myjepa reads versions 1 to 2"):
        checkpoints.read(tmp_path / "future.pt")
    del raw["run"]
    torch.save(raw, tmp_path / "cut.pt")
    with pytest.raises(UserError, match=r"cut.pt: not a MyJEPA pretraining checkpoint \(KeyError: 'run'\)"):
        myjepa.load_encoder(tmp_path / "cut.pt")

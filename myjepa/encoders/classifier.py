"""A classifier release loaded: the finetuned encoder with its input contract, the attentive probe, and the
decision rule, whose `predict(x, fs)` gives each record's class probabilities (`myjepa.load_classifier`).

Records are scored exactly as the finetune run scored its test fold: resampled to the contract's rate,
rounded to float16 as the dumps it trained on store them, z-scored with its train folds' statistics, cut
into strided crops; each crop's probabilities (sigmoid per class, or softmax for a multi-class task) are
averaged over the record's crops. A linear-protocol probe trained on float16 tokens (the feature cache)
sees its tokens rounded the same way. So `myjepa predict` on the test fold gives the run's predictions.npz.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from myjepa.encoders.load import from_release
from myjepa.encoders.pretrained import PretrainedEncoder
from myjepa.encoders.release import (
    CLASSIFIER,
    CONFIG,
    HEAD_WEIGHTS,
    read_release_config,
    read_safetensors,
    release_kind,
)
from myjepa.errors import UserError
from myjepa.models.heads import AttentiveProbe, normalise_tokens, record_scores

ROUNDINGS = ("float16", None)


@dataclass
class ClassifierSpec:
    """config.json's `classifier` section: the task, its classes, and how probabilities become labels."""

    task: str
    codes: list[str]  # the class codes, in the order of the probabilities
    descriptions: list[str]  # each class in words
    thresholds: list[float | None]  # per class: p >= threshold is the label (multi-label); None with argmax
    multiclass: bool  # softmax over the classes, one label per record (the argmax)
    input_rounding: str | None  # "float16": samples rounded as the dumps it trained on store them
    token_rounding: str | None  # "float16": the probe trained on float16 tokens (the linear feature cache)
    head: dict[str, Any]  # the probe's file, sha256, dim, num_classes, num_heads

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str) -> ClassifierSpec:
        section = config.get("classifier")
        keys = ("task", "classes", "multiclass", "input_rounding", "token_rounding", "head")
        if not isinstance(section, dict) or any(k not in section for k in keys):
            raise UserError(f"{source}: 'classifier' must hold {list(keys)}")
        classes = section["classes"]
        if not (isinstance(classes, list) and classes and all(isinstance(c, dict) and "code" in c for c in classes)):
            raise UserError(f"{source}: 'classifier.classes' must be a list of {{code, description, threshold}}")
        for key in ("input_rounding", "token_rounding"):
            if section[key] not in ROUNDINGS:
                raise UserError(f"{source}: 'classifier.{key}' is {section[key]!r}, not one of {list(ROUNDINGS)}")
        thresholds = [c.get("threshold") for c in classes]
        if not section["multiclass"] and not all(isinstance(t, (int, float)) for t in thresholds):
            raise UserError(f"{source}: every class of a multi-label classifier needs a numeric 'threshold'")
        return cls(
            task=str(section["task"]),
            codes=[str(c["code"]) for c in classes],
            descriptions=[str(c.get("description", c["code"])) for c in classes],
            thresholds=thresholds,
            multiclass=bool(section["multiclass"]),
            input_rounding=section["input_rounding"],
            token_rounding=section["token_rounding"],
            head=section["head"],
        )


class Classifier(nn.Module):
    """A finetuned encoder and its probe; `classes` are the class codes in the order of `predict`'s columns."""

    def __init__(self, encoder: PretrainedEncoder, head: AttentiveProbe, spec: ClassifierSpec) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.spec = spec
        self.eval()

    @property
    def classes(self) -> list[str]:
        return self.spec.codes

    @property
    def config(self) -> dict[str, Any]:
        """The release's config.json."""
        return self.encoder.config

    @torch.no_grad()
    def predict(self, x: np.ndarray | torch.Tensor, fs: float, batch_crops: int = 256) -> torch.Tensor:
        """Class probabilities (B, C), float32 on the CPU, of records x (B, 12, T) in mV sampled at `fs` Hz.

        The leads must be in the contract's order (`self.encoder.contract.leads`: I, II, III, aVR, aVL, aVF,
        V1-V6); other rates are resampled; a record shorter than one crop, or holding a NaN or infinite
        sample, is an error. Column j is class `self.classes[j]`; `labels` turns the probabilities into
        decisions. Runs on the device the module is on (`model.to("cuda")`), in float32.

        Example::

            import myjepa

            model = myjepa.load_classifier("results/classifiers/tiny-s0/rhythm/linear/s0")
            p = model.predict(x, fs=500)  # x: (records, 12, samples) in mV -> (records, len(model.classes))
            labels = model.labels(p)  # 0/1 per class: p >= each class's threshold (argmax: multi-class)
        """
        spec = self.spec
        crops = self.encoder.strided_crops(x, fs, "predict", float16=spec.input_rounding == "float16")
        finite = np.isfinite(crops.signals).all(axis=(1, 2))  # x was finite: only float16 rounding overflows
        if not finite.all():
            raise UserError(
                f"predict: record {int(np.flatnonzero(~finite)[0])} of x holds values beyond float16's ±65504 mV, "
                "the range of the dumps the classifier was trained on"
            )
        device = next(self.parameters()).device
        self.eval()
        out = []
        for _, chunk, batch in crops.batches(np.arange(len(crops.signals)), batch_crops, device):
            tokens = self.encoder.encoder(batch).float()
            if spec.token_rounding == "float16":  # what the feature cache the probe trained on holds
                logits = self.head(normalise_tokens(tokens).half().float(), normed=True)
            else:
                logits = self.head(tokens)
            out.append(record_scores(logits, len(chunk), spec.multiclass).cpu())
        return torch.cat(out)

    def labels(self, probabilities: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, C) 0/1 decisions: p >= the class's threshold (chosen on the validation fold), or for a multi-class
        task the most probable class."""
        p = np.asarray(probabilities.cpu() if isinstance(probabilities, torch.Tensor) else probabilities)
        if self.spec.multiclass:
            return (np.arange(p.shape[1])[None] == p.argmax(1)[:, None]).astype(np.uint8)
        return (p >= np.asarray(self.spec.thresholds, dtype=np.float64)[None]).astype(np.uint8)


def load_classifier(path: str | Path) -> Classifier:
    """The classifier of a release folder (`myjepa export --classifier`), on the CPU; safetensors and JSON only,
    each file checked against the sha256 config.json records."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder (expected a classifier release: `myjepa export --classifier`)")
    if not (folder / CONFIG).is_file() and (folder / "results.json").is_file():
        raise UserError(
            f"{folder}: a finetune run, not a release; export it first: "
            f"myjepa export --classifier {folder} --out RELEASE_DIR"
        )
    if release_kind(read_release_config(folder)) != CLASSIFIER:
        raise UserError(
            f"{folder}: an encoder release (it embeds records: myjepa.load_encoder); a classifier release comes "
            "from a finetune run: myjepa export --classifier FINETUNE_DIR --out DIR"
        )
    loaded = from_release(folder)
    config = loaded.release or {}
    source = str(folder / CONFIG)
    spec = ClassifierSpec.from_config(config, source)
    head = build_head(spec, loaded.encoder.dim, folder, source)
    contract = loaded.require_contract()
    return Classifier(PretrainedEncoder(loaded.encoder, contract, config), head, spec)


def build_head(spec: ClassifierSpec, dim: int, folder: Path, source: str) -> AttentiveProbe:
    """The attentive probe config.json describes, filled strictly with head.safetensors."""
    h = spec.head
    try:
        head = AttentiveProbe(int(h["dim"]), int(h["num_classes"]), int(h["num_heads"]))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{source}: 'classifier.head' needs dim, num_classes and num_heads: {e}") from None
    if h["num_classes"] != len(spec.codes):
        raise UserError(f"{source}: the head has {h['num_classes']} outputs but {len(spec.codes)} classes are listed")
    if h["dim"] != dim:
        raise UserError(f"{source}: the head takes tokens of dim {h['dim']} but the encoder's are {dim}")
    state = read_safetensors(folder / HEAD_WEIGHTS, h.get("sha256"))
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        message = " ".join(str(e).split())
        raise UserError(f"{folder / HEAD_WEIGHTS}: does not fit the head config.json describes: {message}") from None
    return head.eval()

"""MODEL_CARD.md of a classifier release: written from its config.json alone (`myjepa.release.classifier`)."""

from __future__ import annotations

from typing import Any

from myjepa.release.card import LICENCES, fmt, md_table


def interval(ci: list[float | None]) -> str:
    return "—" if None in ci else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def classes_table(classifier: dict[str, Any], test: dict[str, Any]) -> str:
    """Per class: the code, its meaning, the decision threshold, and on the test fold the AUC with its interval,
    the positives, and the sensitivity and specificity of the release's decisions."""
    rows = [
        [
            f"`{c['code']}`",
            c["description"],
            fmt(c["threshold"]),
            fmt(c["val_f1"]),
            fmt(t["auc"]),
            interval(t["auc_ci"]),
            t["positives"],
            fmt(t["sensitivity"]),
            fmt(t["specificity"]),
        ]
        for c, t in zip(classifier["classes"], test["classes"])
    ]
    header = ["class", "meaning", "threshold", "val F1", "test AUC", "95 % CI", "test positives", "sens.", "spec."]
    notes = [f"- `{c['code']}`: {c['note']}" for c in classifier["classes"] if c["note"]]
    return md_table(header, rows) + ("\n\n" + "\n".join(notes) if notes else "")


def data_section(run: dict[str, Any], classifier: dict[str, Any]) -> str:
    """The dump and labels it was trained on, and each split's records and positives per class."""
    records = run["records"]
    data = run.get("data")
    counts = f"{records['train']} train, {records['val']} validation and {records['test']} test records"
    if not data:
        return f"{counts}; the finetune run did not record its dump (an older myjepa wrote it)."
    if data.get("kind") == "PTB-XL":
        folds = data["folds"]
        source = (
            f"PTB-XL task `{data['task']}` (labels from `{data['tables']}`): folds {folds['train']} train, "
            f"{folds['val']} validation (early stopping, thresholds), {folds['test']} test"
        )
    else:
        source = f"your labels `{data.get('labels')}`"
    table = md_table(
        ["class", "train positives", "validation positives", "test positives"],
        [
            [f"`{c['code']}`", *(data["class_counts"][split][j] for split in ("train", "val", "test"))]
            for j, c in enumerate(classifier["classes"])
        ],
    )
    return (
        f"Trained on {source}; {counts} of the dump `{data['dump']}` ({data['records']} records at {data['fs']} Hz)."
        f"\n\n{table}"
    )


def licence_lines(run: dict[str, Any]) -> str:
    data = run.get("data") or {}
    lines = [LICENCES["ptb-xl"] if data.get("kind") == "PTB-XL" else "your labels and dump: their own licence"]
    if run.get("encoder_pretrained"):
        lines.append(f"the encoder's pretraining data: see the card of its release, or the run of `{run['encoder']}`")
    return "\n".join(f"- {line}" for line in lines)


def render_classifier_card(config: dict[str, Any]) -> str:
    """The card, section by section."""
    enc, inp, clf, run = config["encoder"], config["input"], config["classifier"], config["finetuning"]
    test = run["test"]
    encoder_line = (
        f"pretrained encoder `{run['encoder_name']}` (`{run['encoder']}`)"
        if run.get("encoder_pretrained")
        else f"randomly initialised encoder `{run['encoder_name']}` (a baseline: no pretraining)"
    )
    protocol = run.get("protocol")
    trained = "the probe alone on the frozen encoder" if protocol == "linear" else "the encoder and the probe together"
    kind = "one label per record (softmax)" if clf["multiclass"] else "any number of labels per record (sigmoid)"
    return f"""# MyJEPA ECG classifier `{config["name"]}`

Task `{clf["task"]}`: {len(clf["classes"])} classes, {kind}.

An attentive probe on a 12-lead ECG encoder (ViT: dim {enc["dim"]}, depth {enc["depth"]}, {enc["num_heads"]} heads),
the {encoder_line}. Trained with the `{run.get("protocol_name") or protocol}` protocol ({protocol}: {trained});
these are the weights of the step with the best validation macro AUC ({fmt(run.get("val_best_auc"))}, step
{run.get("best_step")} of {run.get("steps")}).

## Use

```python
import myjepa

model = myjepa.load_classifier("PATH/TO/THIS/FOLDER")
p = model.predict(x, fs={inp["fs"]})  # x: (records, 12, samples) in mV, leads as below -> (records, classes)
labels = model.labels(p)  # model.classes: the class codes, the columns of p and labels
```

or `myjepa predict --model PATH/TO/THIS/FOLDER --src RECORDS_DIR_OR_DUMP --out predictions.csv` (one row per
record: its id, `p_CODE` per class, `label_CODE` per class, and `predicted`, the codes labelled).

## Classes and decisions

Decisions: {clf["decision"]["text"]}.

Test figures are on the finetune run's test fold ({test["records"]} records); the intervals are 95 % bootstrap
percentile intervals over its resamples.

{classes_table(clf, test)}

Test macro AUC: {fmt(test["macro_auc"])} {interval(test["macro_auc_ci"])}.

## Input

{inp["units"]}, leads {", ".join(inp["leads"])}, {inp["fs"]} Hz. Other rates are resampled, then samples
are rounded to float16 as the dumps it was trained on store them. Records shorter than
{inp["crop"] / inp["fs"]:g} s ({inp["crop"]} samples) are refused. Each lead is z-scored with the mean and std
of its training records (config.json `input`); a record's probabilities are the mean of those of its crops of
{inp["crop"]} samples every {inp["stride"]} samples.

## Training data

{data_section(run, clf)}

## Intended use and limits

Research: reproducing and extending the evaluation, and labelling new records for research questions. Not a
medical device and not validated for diagnosis. Probabilities are not calibrated to any population; the
thresholds maximise F1 at the validation fold's prevalence and move with it. Other devices, filters,
populations or lead placements may shift the scores. A class with few positives has a wide interval, or none.
Records generated by `myjepa synth` (the workflow's demo) are synthetic: a classifier trained on them is a
test artefact, not a model of real ECGs.

## Data licences

{licence_lines(run)}

## Software

{md_table(["package", "version"], [[k, v] for k, v in config["software"].items()])}
"""

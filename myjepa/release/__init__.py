"""Releases: a pretrained encoder, or a finetuned classifier, as files anyone can load; the commands that use them.

The release format (this is its one description)
-------------------------------------------------
`myjepa export --encoder RUN/encoder.pt --out DIR` writes an encoder release, three files:

- `model.safetensors`: the encoder's weights (float32 `VisionTransformer` state dict; safetensors, no pickle).
- `config.json`:
  `format` ("myjepa-release") and `format_version` (1); `kind` ("encoder"; a release without `kind` is one);
  `name`;
  `weights`: `file`, `sha256` (checked on loading: a changed or truncated file is refused), `dtype`;
  `encoder`: the `EncoderConfig` that rebuilds the network (fs, leads, channel_size, patch_size, dim,
  depth, num_heads, mlp_ratio, num_registers);
  `embedding`: `dim` and how tokens are pooled;
  `input`: the contract (`myjepa.encoders.contract.InputContract`): `fs` (Hz), `leads` (row order), `units` ("mV"),
  `crop` and `stride` (samples at fs; a record needs at least one crop), `mean` and `std` (per lead, mV:
  the z-scoring pretraining applied, pooled over its dumps by sampling weight);
  `pretraining`: step, steps, batch size, seed, the final losses, each dump (name, path, records, samples,
  fs, weight, hours), the encoder.pt's sha256 and the full pretraining config;
  `software`: python, myjepa, torch, numpy and safetensors versions.
- `MODEL_CARD.md`: the same in prose, the evaluation table (`--results`), intended use, limits, licences.

`myjepa export --classifier FINETUNE_DIR --out DIR` writes a classifier release from a `myjepa finetune` run:
the same files with the same keys where the two agree (`model.safetensors` is the run's encoder at its best
step, finetuned or frozen; `weights`, `encoder`, `embedding`, `software` as above), and

- `head.safetensors`: the attentive probe's weights (`myjepa.models.heads.AttentiveProbe`).
- `config.json`: `kind` "classifier";
  `input`: the same contract, with the finetune run's `crop` and `stride` and, as `mean` and `std`, the
  z-scoring of its training records (what its encoder and probe saw);
  `classifier`: `task`; `classes`, one per output in order: `code`, `description` (PTB-XL's statement
  names, or a LABELS.csv's class names), `threshold`, `val_f1`, `note`; `multiclass` and `activation`
  (sigmoid per class, or softmax); `decision`: `rule` and its `text` ("max-f1": per class the threshold
  maximising F1 on the validation fold, a label where p >= threshold; "argmax": a multi-class task's most
  probable class); `scoring` (each crop's probabilities averaged over the record's crops);
  `input_rounding` ("float16": samples are rounded as the dumps it trained on store them) and
  `token_rounding` ("float16" where a linear probe trained on the feature cache's float16 tokens, else
  null), so that records score exactly as the finetune run scored them; `head`: `dim`, `num_classes`,
  `num_heads`, and its `file`, `sha256` (checked on loading), `dtype`;
  `finetuning`: the run (folder, protocol, seed, encoder name, source and sha256, best step, steps, the
  best_ckpt.pt's sha256, records per split, the data: dump, tables or labels, folds, positives per class
  and split; the finetune config) and `test`: the test fold's macro AUC with its CI and, per class, the
  AUC with a bootstrap CI (the run's resamples and seed), positives, sensitivity and specificity of the
  release's decisions.
- `MODEL_CARD.md`: use, classes with thresholds and test AUCs, input, training data, limits, licences.

Modules: `export` and `card` (`myjepa export`), `classifier` and `classifier_card` (`--classifier`), `files`
(what both write), `records` and `embed` (`myjepa embed`), `predict` (`myjepa predict`). Reading a release
(`myjepa.load_encoder`, `myjepa.load_classifier`), its input contract, `PretrainedEncoder.embed` and
`Classifier.predict` are `myjepa.encoders`'s: `encoders.release` checks these files as it reads them.
"""

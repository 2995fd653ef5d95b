"""Reading an encoder: one home for everything that turns a file into an encoder and records into its input.

- `build`: a `VisionTransformer` from an EncoderConfig, filled strictly with stored weights.
- `load`: an encoder from `encoder.pt`, `last_ckpt.pt` or `best_ckpt.pt` (read by `myjepa.pretrain.checkpoints`,
  the checkpoint record's one reader), a finetuning `best_ckpt.pt`, a release folder, or a model config (a
  random-init baseline); `load_encoder` is `myjepa.load_encoder`.
- `release`: the files of a release folder, checked as they are read (the format: `myjepa.release`).
- `contract`: the input a pretrained encoder expects (rate, leads, units, crops, the pretraining z-scoring).
- `crops`: records cut into strided or random crops, z-scored per lead.
- `pretrained`: `PretrainedEncoder`, the encoder with its contract, whose `embed(x, fs)` makes record embeddings.
- `classifier`: `Classifier`, a classifier release's encoder and attentive probe, whose `predict(x, fs)` gives class
  probabilities as the finetune run scored them; `load_classifier` is `myjepa.load_classifier`.

Below `evaluate/` and `release/`, which both read encoders through here; above `pretrain/` and `models/`.
"""

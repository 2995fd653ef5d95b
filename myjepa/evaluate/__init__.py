"""Evaluation on PTB-XL or a user's labels. `finetune` is the command (`myjepa finetune`: linear probing and
finetuning), a short list of steps over the modules beside it: `config` (FinetuneConfig and the shipped
protocols in `configs/`), `run` (a run's task data, encoder check and crops), `model` (encoder, probe and
optimizer), `features` (the frozen-encoder cache), `training` (the loop with early stopping) and `outputs`
(test scores, best_ckpt.pt, predictions.npz, results.json). The tasks and their metrics are `myjepa.tasks`'s;
the encoder is read by `myjepa.encoders`; the attentive probe is `myjepa.models.heads`."""

"""Evaluation on PTB-XL. `finetune` is the command (`myjepa finetune`: linear probing and finetuning),
a short list of steps over the modules beside it: `config` (FinetuneConfig and the shipped protocols
in `configs/`), `labels` (the benchmark tasks, TASKS; torch-free), `run` (a run's data and crops),
`encoder_io` (which encoder to evaluate), `model` (encoder, probe and optimizer), `heads` (the
attentive probe), `features` (crops and the frozen-encoder cache), `training` (the loop with early
stopping), `metrics` (AUCs) and `outputs` (test scores, best_ckpt.pt, predictions.npz, results.json)."""

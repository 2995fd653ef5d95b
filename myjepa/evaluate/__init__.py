"""Evaluation on PTB-XL: `finetune` (`myjepa finetune`: linear probing and finetuning), `config`
(FinetuneConfig and the shipped protocols in `configs/`), `labels` (the benchmark tasks), `features`
(crops and the frozen-encoder cache), `heads` (the attentive probe), `metrics` (AUCs) and
`encoder_io` (which encoder to evaluate)."""

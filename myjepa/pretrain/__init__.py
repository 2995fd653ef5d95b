"""Pretraining: `train` (the loop and `myjepa pretrain`), `config` (PretrainConfig and the shipped
YAMLs in `configs/`), `batches` (random crops from dumps), `masks` (ECG-JEPA block masking).

    torchrun --standalone --nproc_per_node=4 -m myjepa.pretrain --data ... --out ... --config ViTS_mimic
"""

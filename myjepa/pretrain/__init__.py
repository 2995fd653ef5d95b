"""Pretraining: `train` (the loop and `myjepa pretrain`), `options` (what a run is besides its config),
`config` (PretrainConfig and the shipped YAMLs in `configs/`), `batches` (random crops from dumps), `masks`
(ECG-JEPA block masking), `checkpoints` (the checkpoint record and resuming), `run_folder`, `recorder`.

    torchrun --standalone --nproc_per_node=4 -m myjepa.pretrain --data ... --out ... --config ViTS_mimic
"""

"""Downstream tasks: which records, which split, which classes, and how predictions are scored.

Below both `evaluate/` (which trains and scores probes on them) and `pretrain/` (whose online probe
validates on one): `names` (PTB-XL's task names, pandas-free), `ptbxl` (its tables, label aggregation
and folds), `custom` (a user's LABELS.csv), `splits` (what either gives), `metrics` (AUCs).
"""

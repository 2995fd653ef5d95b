"""Evaluation on PTB-XL: task labels, folds, metrics, probe heads, feature cache, encoder loading."""

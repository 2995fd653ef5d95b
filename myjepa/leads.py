"""The twelve standard leads in their canonical order. A leaf module: every stage imports it, it imports nothing."""

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""Canonical lead order of every dump and every model input."""

"""Models: the ECG ViT encoder (more to come: predictor, SIGReg, MyJEPA)."""

from myjepa.models.vit import VisionTransformer

__all__ = ["VisionTransformer"]

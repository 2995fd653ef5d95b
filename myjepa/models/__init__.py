"""Models: the ECG ViT encoder, the JEPA predictor, SIGReg and the MyJEPA model that joins them."""

from myjepa.models.myjepa import MyJEPA, Projector
from myjepa.models.predictor import Predictor
from myjepa.models.sigreg import SIGReg
from myjepa.models.vit import VisionTransformer

__all__ = ["MyJEPA", "Predictor", "Projector", "SIGReg", "VisionTransformer"]

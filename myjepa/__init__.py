"""MyJEPA: self-supervised pretraining of 12-lead ECG encoders.

ECG-JEPA's block masking and transformer predictor, trained with LeJEPA's single encoder and
SIGReg regulariser (no EMA teacher, no stop-gradient).
"""

__version__ = "0.1.0"

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""Canonical lead order of every dump and every model input."""


def load_encoder(path: str):
    """A pretrained encoder (`torch.nn.Module`) from a release folder or an encoder.pt; see
    `myjepa.release.model.PretrainedEncoder.embed` for its `embed(x, fs)` and a complete example.

    Imported on call: `import myjepa` stays free of torch (the converters do not need it).
    """
    from myjepa.release.load import load_encoder as load

    return load(path)

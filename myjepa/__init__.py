"""MyJEPA: self-supervised pretraining of 12-lead ECG encoders.

ECG-JEPA's block masking and transformer predictor, trained with LeJEPA's single encoder and
SIGReg regulariser (no EMA teacher, no stop-gradient).
"""

from myjepa.leads import LEADS as LEADS  # the canonical lead order, re-exported: stages import myjepa.leads

__version__ = "0.1.0"


def load_encoder(path: str):
    """A pretrained encoder (`torch.nn.Module`) from a release folder or an encoder.pt, on the CPU.

    Its `embed(x, fs)` takes x (records, 12 leads, samples) in mV at `fs` Hz and returns (records, dim)
    embeddings; it resamples and crops as the encoder needs (`myjepa.encoders.pretrained.PretrainedEncoder.embed`)::

        import numpy as np
        import myjepa

        model = myjepa.load_encoder("results/release/tiny-s0")
        x = 0.1 * np.random.randn(4, 12, 1000).astype(np.float32)  # 4 records, 10 s at 100 Hz, mV, leads I..V6
        z = model.embed(x, fs=100)  # torch.Tensor (4, model.dim)

    Imported on call: `import myjepa` stays free of torch (the converters do not need it).
    """
    from myjepa.encoders.load import load_encoder as load

    return load(path)


def load_classifier(path: str):
    """A classifier release (`myjepa export --classifier FINETUNE_DIR`) as a `torch.nn.Module`, on the CPU.

    Its `predict(x, fs)` takes x (records, 12 leads, samples) in mV at `fs` Hz and returns the class
    probabilities (records, len(model.classes)), scored as the finetune run scored its test fold;
    `labels(p)` applies the release's decision thresholds (`myjepa.encoders.classifier.Classifier`)::

        import myjepa

        model = myjepa.load_classifier("results/classifiers/tiny-s0/rhythm/linear/s0")
        p = model.predict(x, fs=500)  # torch.Tensor (records, len(model.classes)); model.classes: the codes
        labels = model.labels(p)  # 0/1 per class

    Safetensors and JSON only (no pickle), each file checked against its recorded sha256. Imported on call,
    like `load_encoder`.
    """
    from myjepa.encoders.classifier import load_classifier as load

    return load(path)

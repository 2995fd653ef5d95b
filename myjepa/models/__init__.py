"""The networks, shared by pretraining and evaluation: `config` (the encoder's keys), `vit` (the ECG
encoder), `predictor` (the JEPA predictor), `sigreg` (LeJEPA's regulariser), `myjepa` (the model
that joins them), `heads` (the attentive probe of evaluation and classifier releases) and `optim`
(parameter groups). Import from the modules: this package stays torch-free to import, so the workflow
can read the encoder's keys without loading torch."""

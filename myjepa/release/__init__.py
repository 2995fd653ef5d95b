"""Releases: a pretrained encoder as files anyone can load, and the commands that use them.

The release format (this is its one description)
-------------------------------------------------
`myjepa export --encoder RUN/encoder.pt --out DIR` writes a folder of three files:

- `model.safetensors`: the encoder's weights (float32 `VisionTransformer` state dict; safetensors, no pickle).
- `config.json`:
  `format` ("myjepa-release") and `format_version` (1); `name`;
  `weights`: `file`, `sha256` (checked on loading: a changed or truncated file is refused), `dtype`;
  `encoder`: the `EncoderConfig` that rebuilds the network (fs, leads, channel_size, patch_size, dim,
  depth, num_heads, mlp_ratio, num_registers);
  `embedding`: `dim` and how tokens are pooled;
  `input`: the contract (`myjepa.encoders.contract.InputContract`): `fs` (Hz), `leads` (row order), `units` ("mV"),
  `crop` and `stride` (samples at fs; a record needs at least one crop), `mean` and `std` (per lead, mV:
  the z-scoring pretraining applied, pooled over its dumps by sampling weight);
  `pretraining`: step, steps, batch size, seed, the final losses, each dump (name, path, records, samples,
  fs, weight, hours), the encoder.pt's sha256 and the full pretraining config;
  `software`: python, myjepa, torch, numpy and safetensors versions.
- `MODEL_CARD.md`: the same in prose, the evaluation table (`--results`), intended use, limits, licences.

Modules: `export` and `card` (`myjepa export`), `records` and `embed` (`myjepa embed`). Reading a
release (`myjepa.load_encoder`), its input contract and `PretrainedEncoder.embed` are `myjepa.encoders`'s:
`encoders.release` checks these files as it reads them.
"""

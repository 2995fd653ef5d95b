"""Raw archives -> dumps, torch-free (converter workers start fast): `wfdb_io` (WFDB records),
`resample`, `writer` (`myjepa convert`), `synth` and `simulator` (`myjepa synth`, the demo data)."""

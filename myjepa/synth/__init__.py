"""Synthetic ECG archives (`myjepa synth`): the workflow's demo data and the tests' raw archives.

`simulator` (a beating heart vector projected onto 12 leads), `profiles` (SCP labels and the heart
parameters they imply), the archive layouts `ptbxl_mimic` and `code15_challenge` (written in the real
archives' formats, so the converters in `myjepa.ingest` read them as they read the real ones),
`parallel` (records written by worker processes) and `command` (the command).
"""

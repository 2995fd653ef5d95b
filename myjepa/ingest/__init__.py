"""Raw archives -> dumps, torch-free (converter workers start fast). Importing this package imports nothing.

- `archives`: the archives `myjepa convert` reads, by name (`ARCHIVES`); one module each lists an
  archive's records: `ptbxl`, `mimic`, on the shared `record_list` (RecordList, CSV checks, shards).
- `wfdb_io` (WFDB records), `resample`, `record` (one record -> one float16 dump row).
- `writer` (the converter), `output` (dump files), `stats` (exact sums -> mean/std), `merge` (shards).
- `convert`: the `myjepa convert` command line.
The synthetic archives the demo and the tests convert are `myjepa.synth`'s.
"""

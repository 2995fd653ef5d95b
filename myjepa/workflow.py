"""What the Snakemake workflow takes from the package: the config checks its schema cannot express,
the tables derived from the config, and the pieces of the jobs' command lines and environment.

`workflow/rules/common.smk` validates the config against its JSON schema, then calls these. A config
problem raises ConfigError, whose message starts with the key; common.smk shows it as Snakemake's
`WorkflowError("config: <message>")`. Torch-free and quick to import: Snakemake imports it while it
parses the workflow.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from myjepa.config import load, parse_overrides, resolve_config_path
from myjepa.errors import UserError
from myjepa.evaluate.config import CONFIG_DIR as FINETUNE_CONFIGS
from myjepa.models.config import ENCODER_KEYS
from myjepa.pretrain.config import CONFIG_DIR as PRETRAIN_CONFIGS
from myjepa.tasks.names import TASKS

EVALUATION_DUMP = "ptb-xl"
"""The evaluation's dump (data.ptb_xl); pretraining can sample its train folds under this name."""

SYNTH_LAYOUTS = ("mimic-iv-ecg", "code-15", "challenge-2021")
"""Archive kinds `myjepa synth` writes, so a data.pretrain entry of these kinds may leave raw and dump empty."""
CONFIG_DIRS = {"pretrain": PRETRAIN_CONFIGS, "finetune": FINETUNE_CONFIGS}

Run = dict[str, Any]  # one entry of pretrain.runs, defaults filled in by the schema
Protocol = dict[str, Any]  # one entry of evaluate.protocols


class ConfigError(UserError):
    """A problem in the workflow's config; the message names the key."""


# ---- checks --------------------------------------------------------------------------------------


def schema_message(error: Any) -> str:
    """A jsonschema ValidationError as one line naming the key; an unknown key gets a did-you-mean."""
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        if unknown:
            close = difflib.get_close_matches(unknown[0], allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            return f"{where}: unknown key {unknown[0]!r}{hint}"
    return f"{where}: {error.message}"


def check_choice(where: str, value: Any, choices: Sequence[str]) -> None:
    """The check and the message of JSON schema's `enum`, for choices the package defines."""
    if value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {list(choices)!r}")


def typed_values(config: Any, schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> Any:
    """`config` with each text value that the schema types as a number, a boolean or null read as YAML, where
    it reads as that type. `snakemake --config 'evaluate={val_fold: 8}'` passes every nested value as text
    ('8'), which the schema would refuse as "not of type 'integer'"; a config file's values are typed already."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        schema = {**defs[schema["$ref"].rsplit("/", 1)[-1]], **schema}
    if isinstance(config, dict):
        extra = schema.get("additionalProperties")
        fields = {k: schema.get("properties", {}).get(k, extra if isinstance(extra, dict) else {}) for k in config}
        return {k: typed_values(v, fields[k], defs) for k, v in config.items()}
    if isinstance(config, list):
        return [typed_values(v, schema.get("items", {}), defs) for v in config]
    types = [schema["type"]] if isinstance(schema.get("type"), str) else schema.get("type", [])
    if isinstance(config, str) and "string" not in types:
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(config)
            kind = {bool: "boolean", int: "integer", float: "number", type(None): "null"}.get(type(value))
            if kind in types or (kind == "integer" and "number" in types):
                return value
    return config


def check_config(config: Mapping[str, Any]) -> None:
    """What the schema cannot say: tasks and dump names are the package's, paths exist, weights are numbers,
    folds differ."""
    for i, task in enumerate(config["evaluate"]["tasks"]):
        check_choice(f"evaluate.tasks.{i}", task, TASKS)
    check_data(config["data"])
    names = dataset_names(config["data"])
    for i, run in enumerate(config["pretrain"]["runs"]):
        for name, weight in run["datasets"].items():
            check_choice(f"pretrain.runs.{i}.datasets", name, names)
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
                raise ConfigError(
                    f"pretrain.runs.{i}.datasets.{name}: weight {weight!r} is not a finite positive number"
                )
    if config["evaluate"]["val_fold"] == config["evaluate"]["test_fold"]:
        raise ConfigError("evaluate.val_fold and evaluate.test_fold must differ")


def dataset_names(data: Mapping[str, Any]) -> list[str]:
    """The dumps the workflow builds (workflow/rules/data.smk), by the names pretrain.runs[].datasets use."""
    return [entry["name"] for entry in data["pretrain"]] + [EVALUATION_DUMP]


def check_data(data: Mapping[str, Any]) -> None:
    """Configured raw directories exist, ready-made dumps are .npy, a PTB-XL dump comes with its tables, every
    pretraining entry names a known archive and a unique name, and only synthesisable ones lack data."""
    from myjepa.ingest.archives import ARCHIVES  # here: the converters import numpy and h5py

    ptbxl = data["ptb_xl"]
    if ptbxl["dump"] and not ptbxl["raw"]:
        raise ConfigError("data.ptb_xl.dump needs data.ptb_xl.raw too (its ptbxl_database.csv and scp_statements.csv)")
    paths = [("data.ptb_xl", ptbxl)] + [(f"data.pretrain.{i}", e) for i, e in enumerate(data["pretrain"])]
    for key, entry in paths:
        if entry["raw"] and not Path(entry["raw"]).is_dir():
            raise ConfigError(f"{key}.raw: {entry['raw']} is not a directory")
        if entry["dump"] and not entry["dump"].endswith(".npy"):
            raise ConfigError(f"{key}.dump: {entry['dump']} is not a .npy dump")
    seen = {EVALUATION_DUMP}
    for i, entry in enumerate(data["pretrain"]):
        if entry["name"] in seen:
            raise ConfigError(f"data.pretrain.{i}.name: {entry['name']!r} is used twice (ptb-xl is data.ptb_xl's)")
        seen.add(entry["name"])
        check_choice(f"data.pretrain.{i}.archive", entry["archive"], [a for a in ARCHIVES if a != EVALUATION_DUMP])
        if not (entry["raw"] or entry["dump"] or entry["archive"] in SYNTH_LAYOUTS):
            raise ConfigError(
                f"data.pretrain.{i}: a {entry['archive']} archive needs `raw` or `dump` (no synthetic one)"
            )


def config_file(name_or_path: str, kind: str, key: str = "config") -> str:
    """Path of a shipped config name or a YAML path; `kind` is "pretrain" or "finetune"."""
    try:
        return str(resolve_config_path(name_or_path, CONFIG_DIRS[kind]))
    except UserError as e:
        raise ConfigError(f"{key}: {e}") from None


def check_config_files(
    runs: Mapping[str, Run], protocols: Mapping[str, Protocol], data: Mapping[str, Any] | None = None
) -> None:
    """Resolve every config file and load it with its `set:` overrides, as its job will (the same
    --set text, the same loader): a wrong name, key, type or value fails the dry run, not a job
    hours later after the data conversion. With `data` (the config's section), each run's model must
    also take the rate of every dump it reads."""
    from myjepa.evaluate.config import FinetuneConfig
    from myjepa.pretrain.config import PretrainConfig

    for name, run in runs.items():
        config_file(run["config"], "pretrain", f"pretrain.runs[{name}].config")
        overrides = {"datasets": run["datasets"], **run["set"]}
        cfg = check_loads(f"pretrain.runs[{name}]", PretrainConfig, run["config"], "pretrain", overrides)
        if data is not None:
            check_rates(name, run, cfg.fs, data)
    for name, protocol in protocols.items():
        config_file(protocol["config"], "finetune", f"evaluate.protocols[{name}].config")
        check_loads(f"evaluate.protocols[{name}]", FinetuneConfig, protocol["config"], "finetune", protocol["set"])


def check_loads(where: str, cls: type, name_or_path: str, kind: str, overrides: Mapping[str, Any]) -> Any:
    """Config `name_or_path` loaded into `cls` with `overrides` passed as a job passes them (`set_pairs`);
    otherwise a ConfigError names `where` (and `.set` when an override alone is at fault)."""
    try:
        return load(cls, name_or_path, CONFIG_DIRS[kind], parse_overrides(set_pairs(overrides)))
    except UserError as e:
        message = str(e)
        if message.startswith("override: "):
            raise ConfigError(f"{where}.set: {message.removeprefix('override: ')}") from None
        raise ConfigError(f"{where}: {message}") from None


def check_rates(name: str, run: Run, fs: float, data: Mapping[str, Any]) -> None:
    """The run's model takes the rate of every dump it reads: its datasets, and PTB-XL (the online probe and the
    evaluation); otherwise `myjepa pretrain` would refuse, after the conversions. A converted dump is at data.fs,
    a ready-made one at its stats.json's fs (not checked here before it exists)."""
    entries = {EVALUATION_DUMP: ("data.ptb_xl", data["ptb_xl"])}
    entries |= {e["name"]: (f"data.pretrain.{i}", e) for i, e in enumerate(data["pretrain"])}
    for dataset in dict.fromkeys([*run["datasets"], EVALUATION_DUMP]):
        (key, entry), rate = entries[dataset], data["fs"]
        where = f"data.fs, the rate every dump is converted to, is {rate} Hz"
        if entry["dump"]:
            stats = Path(dump_files(entry["dump"])["stats"])
            try:
                rate = json.loads(stats.read_text())["fs"]
            except (OSError, ValueError, TypeError, KeyError):
                continue
            where = f"{key}.dump {entry['dump']} is at {rate} Hz ({stats.name})"
        if rate != fs:
            raise ConfigError(
                f"pretrain.runs[{name}]: its model ({run['config']}) takes {fs} Hz, but {where}; every dump a run "
                "reads (its datasets, and ptb-xl for the online probe and the evaluation) must be at its model's rate"
            )


# ---- tables derived from the config --------------------------------------------------------------


def runs_by_name(runs: Iterable[Run]) -> dict[str, Run]:
    """pretrain.runs by name. A run's `set` may change training keys, not the architecture nor the data."""
    table: dict[str, Run] = {}
    for run in runs:
        name = run["name"]
        if name in table:
            raise ConfigError(f"pretrain.runs: the name {name!r} is used twice")
        touched = sorted(set(run["set"]) & set(ENCODER_KEYS))
        if touched:
            raise ConfigError(
                f"pretrain.runs[{name}].set changes the architecture ({', '.join(touched)}): put those keys "
                "in a model YAML and name it in `config`, so the random-init baseline has the same architecture"
            )
        if "datasets" in run["set"]:
            raise ConfigError(
                f"pretrain.runs[{name}].set: give the data sources in the run's `datasets` key, not in `set`"
            )
        table[name] = run
    return table


def protocols_by_name(protocols: Iterable[Protocol]) -> dict[str, Protocol]:
    """evaluate.protocols by name; an `init` names another protocol."""
    table: dict[str, Protocol] = {}
    for protocol in protocols:
        if protocol["name"] in table:
            raise ConfigError(f"evaluate.protocols: the name {protocol['name']!r} is used twice")
        table[protocol["name"]] = protocol
    for name, protocol in table.items():
        init = protocol["init"]
        if protocol["config"] == "finetune_after_linear" and not init:
            raise ConfigError(
                f"evaluate.protocols[{name}]: finetune_after_linear needs `init: <name of a linear protocol>`"
            )
        if init and (init not in table or init == name):
            raise ConfigError(
                f"evaluate.protocols[{name}].init: {init!r} is not another protocol of evaluate.protocols "
                f"({', '.join(table)})"
            )
    return table


def model_name(config_ref: str) -> str:
    """`tiny` -> tiny, `path/to/big.yaml` -> big: the name of a model config in encoder names."""
    return Path(config_ref).stem if config_ref.endswith((".yaml", ".yml")) else config_ref


def pretrained_encoders(runs: Mapping[str, Run], seeds: Iterable[int]) -> dict[str, dict[str, Any]]:
    """`RUN-sSEED` -> {run, seed}: one pretrained encoder per run and pretraining seed."""
    return {f"{name}-s{seed}": {"run": name, "seed": seed} for name in runs for seed in seeds}


def baseline_encoders(runs: Mapping[str, Run]) -> dict[str, str]:
    """`random-MODEL` -> model config: one random-init encoder per model config of the runs."""
    table: dict[str, str] = {}
    for run in runs.values():
        name = f"random-{model_name(run['config'])}"
        if table.get(name, run["config"]) != run["config"]:
            raise ConfigError(
                f"pretrain.runs: two model configs are both called {model_name(run['config'])!r}; rename one file"
            )
        table[name] = run["config"]
    return table


def encoder_names(pretrained: Mapping[str, Any], baselines: Mapping[str, Any]) -> list[str]:
    """Every encoder evaluated: the pretrained ones, then the baselines; no name may be both."""
    clash = set(pretrained) & set(baselines)
    if clash:
        raise ConfigError(
            f"pretrain.runs: the run name gives encoder {sorted(clash)[0]!r}, the name of a random-init baseline"
        )
    return [*pretrained, *baselines]


def encoder_table(
    runs: Mapping[str, Run], pretrained: Mapping[str, dict[str, Any]], baselines: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Encoder -> what it is, for the report: it pairs each pretrained run with its random-init baseline."""
    table = {}
    for name, spec in pretrained.items():
        run = runs[spec["run"]]
        baseline = f"random-{model_name(run['config'])}"
        table[name] = {
            "kind": "pretrained",
            "group": spec["run"],
            "model": run["config"],
            "pretrain_seed": spec["seed"],
            "baseline": baseline if baseline in baselines else None,
            "datasets": run["datasets"],
        }
    for name, model in baselines.items():
        table[name] = {
            "kind": "random",
            "group": name,
            "model": model,
            "pretrain_seed": None,
            "baseline": None,
            "datasets": {},
        }
    return table


def alternatives(names: Iterable[Any]) -> str:
    """A regex matching exactly one of `names` (a wildcard constraint)."""
    return "|".join(re.escape(str(n)) for n in names) or "(?!)"  # no name: a regex that matches nothing


def dump_files(npy: str) -> dict[str, str]:
    """A dump's files: the array and its sidecars."""
    stem = npy[: -len(".npy")]
    return {"npy": npy, "index": f"{stem}.index.csv", "stats": f"{stem}.stats.json"}


def dump_of_stats(stats: str) -> str:
    """`x.stats.json` -> `x.npy`: the dump a stats file belongs to."""
    return stats[: -len(".stats.json")] + ".npy"


def set_pairs(overrides: Mapping[str, Any]) -> list[str]:
    """{'steps': 300} -> ["steps=300"], each value as YAML so lists and mappings survive."""
    pairs = []
    for key, value in overrides.items():
        text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
        pairs.append(f"{key}={text}")
    return pairs

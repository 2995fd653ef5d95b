"""Config validation and the helpers of all rules: which data is synthetic, the encoders, params."""

import difflib
import hashlib
import json
import os
import re
import shlex
import sys
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

DATASETS = (
    "mimic-iv-ecg",
    "ptb-xl",
)  # dump names, as the pretraining config's `datasets` keys
ENCODER_KEYS = (
    "fs",
    "leads",
    "channel_size",
    "patch_size",
    "dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "num_registers",
)


def config_error(message):
    raise WorkflowError(f"config: {message}")


def validate_config(cfg):
    """JSON-schema validation (fills defaults); the first problem becomes one line naming the key."""
    try:
        validate(cfg, "../schemas/config.schema.yaml")
    except WorkflowError as e:
        error = (
            e.__context__
        )  # validate() raises from inside its `except ValidationError`
        if not isinstance(error, jsonschema.ValidationError):
            raise
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message
        if error.validator == "additionalProperties":
            allowed = list(error.schema.get("properties", {}))
            unknown = [k for k in error.instance if k not in allowed]
            close = (
                difflib.get_close_matches(unknown[0], allowed, n=1) if unknown else []
            )
            hint = (
                f" (did you mean {close[0]!r}?)"
                if close
                else f" (allowed: {', '.join(allowed)})"
            )
            message = f"unknown key {unknown[0]!r}{hint}" if unknown else message
        config_error(f"{where}: {message}")


validate_config(config)


def _load_myjepa_config():
    try:
        import myjepa.config as mc
        import myjepa.evaluate.config
        import myjepa.pretrain.config
    except ImportError as e:
        raise WorkflowError(
            f"the myjepa package is not importable by snakemake ({e}): run .ci/install"
        ) from None
    return mc


MC = _load_myjepa_config()
from myjepa.errors import UserError
from myjepa.evaluate.config import CONFIG_DIR as FINETUNE_CONFIGS
from myjepa.pretrain.config import CONFIG_DIR as PRETRAIN_CONFIGS


def config_file(name_or_path, kind, key="config"):
    """Path of a shipped config name or a YAML path (an input, so editing it reruns its jobs)."""
    try:
        config_dir = {"pretrain": PRETRAIN_CONFIGS, "finetune": FINETUNE_CONFIGS}[kind]
        return str(MC.resolve_config_path(name_or_path, config_dir))
    except UserError as e:
        config_error(f"{key}: {e}")


# ---- data: synthetic unless a raw directory or a ready-made dump is configured -------------------

PTBXL = config["data"]["ptb_xl"]
MIMIC = config["data"]["mimic_iv_ecg"]
SYNTH_PTBXL = not PTBXL["raw"]
SYNTH_MIMIC = not MIMIC["raw"] and not MIMIC["dump"]
if PTBXL["dump"] and not PTBXL["raw"]:
    config_error(
        "data.ptb_xl.dump needs data.ptb_xl.raw too (its ptbxl_database.csv and scp_statements.csv)"
    )
for key, value in (
    ("data.ptb_xl.raw", PTBXL["raw"]),
    ("data.mimic_iv_ecg.raw", MIMIC["raw"]),
):
    if value and not Path(value).is_dir():
        config_error(f"{key}: {value} is not a directory")
for key, value in (
    ("data.ptb_xl.dump", PTBXL["dump"]),
    ("data.mimic_iv_ecg.dump", MIMIC["dump"]),
):
    if value and not value.endswith(".npy"):
        config_error(f"{key}: {value} is not a .npy dump")


def ptbxl_dir():
    return "results/raw/ptb-xl" if SYNTH_PTBXL else PTBXL["raw"]


def ptbxl_source_rate():
    return 500 if SYNTH_PTBXL else PTBXL["source_rate"]


def mimic_dir():
    return "results/raw/mimic-iv-ecg" if not MIMIC["raw"] else MIMIC["raw"]


def dump_files(npy):
    stem = npy[: -len(".npy")]
    return {"npy": npy, "index": f"{stem}.index.csv", "stats": f"{stem}.stats.json"}


def dump_path(name):
    """The dump of dataset `name`: ready-made if configured, else the converter's output."""
    if name == "ptb-xl":
        return PTBXL["dump"] or rules.convert_ptbxl.output.npy
    return MIMIC["dump"] or rules.merge_mimic.output.npy


SHARDS = config["convert"]["shards"]

# ---- pretraining runs and the encoders evaluated ----------------------------------------------

RUNS = {}
for run in config["pretrain"]["runs"]:
    if run["name"] in RUNS:
        config_error(f"pretrain.runs: the name {run['name']!r} is used twice")
    touched = sorted(set(run["set"]) & set(ENCODER_KEYS))
    if touched:
        config_error(
            f"pretrain.runs[{run['name']}].set changes the architecture ({', '.join(touched)}): put those keys "
            "in a model YAML and name it in `config`, so the random-init baseline has the same architecture"
        )
    if "datasets" in run["set"]:
        config_error(
            f"pretrain.runs[{run['name']}].set: give the data sources in the run's `datasets` key, not in `set`"
        )
    RUNS[run["name"]] = run
SEEDS_PRETRAIN = config["pretrain"]["seeds"]


def model_name(config_ref):
    return (
        Path(config_ref).stem if config_ref.endswith((".yaml", ".yml")) else config_ref
    )


PRETRAINED = {
    f"{name}-s{seed}": {"run": name, "seed": seed}
    for name in RUNS
    for seed in SEEDS_PRETRAIN
}
BASELINES = {}
if config["evaluate"]["baseline"]:
    for run in RUNS.values():
        name = f"random-{model_name(run['config'])}"
        if BASELINES.get(name, run["config"]) != run["config"]:
            config_error(
                f"pretrain.runs: two model configs are both called {model_name(run['config'])!r}; rename one file"
            )
        BASELINES[name] = run["config"]
ENCODERS = list(PRETRAINED) + list(BASELINES)
clash = set(PRETRAINED) & set(BASELINES)
if clash:
    config_error(
        f"pretrain.runs: the run name gives encoder {sorted(clash)[0]!r}, the name of a random-init baseline"
    )

PROTOCOLS = {}
for protocol in config["evaluate"]["protocols"]:
    if protocol["name"] in PROTOCOLS:
        config_error(f"evaluate.protocols: the name {protocol['name']!r} is used twice")
    PROTOCOLS[protocol["name"]] = protocol
for protocol in PROTOCOLS.values():
    init = protocol["init"]
    if protocol["config"] == "finetune_after_linear" and not init:
        config_error(
            f"evaluate.protocols[{protocol['name']}]: finetune_after_linear needs `init: <name of a linear protocol>`"
        )
    if init and (init not in PROTOCOLS or init == protocol["name"]):
        config_error(
            f"evaluate.protocols[{protocol['name']}].init: {init!r} is not another protocol of evaluate.protocols ({', '.join(PROTOCOLS)})"
        )
for (
    run
) in (
    RUNS.values()
):  # resolve every config file now: a wrong name is an error before any job
    config_file(run["config"], "pretrain", f"pretrain.runs[{run['name']}].config")
for protocol in PROTOCOLS.values():
    config_file(
        protocol["config"], "finetune", f"evaluate.protocols[{protocol['name']}].config"
    )
TASKS = config["evaluate"]["tasks"]
SEEDS_EVAL = config["evaluate"]["seeds"]
if config["evaluate"]["val_fold"] == config["evaluate"]["test_fold"]:
    config_error("evaluate.val_fold and evaluate.test_fold must differ")


def alternatives(names):
    return "|".join(re.escape(str(n)) for n in names)


# ---- command-line pieces -------------------------------------------------------------------------


def set_args(overrides):
    """{'steps': 300} -> "--set steps=300", each value as YAML so lists and mappings survive."""
    parts = []
    for key, value in overrides.items():
        text = (
            json.dumps(value)
            if isinstance(value, (list, dict, bool)) or value is None
            else str(value)
        )
        parts.append(f"--set {shlex.quote(f'{key}={text}')}")
    return " ".join(parts)


# wandb reaches the commands through the environment, not params: switching it on or off, or
# renaming the project, must not rerun anything. Subprocesses, SLURM jobs (sbatch exports the
# environment) and containers inherit these.
os.environ.update(
    MYJEPA_WANDB="--wandb" if config["wandb"]["enabled"] else "",
    WANDB_PROJECT=config["wandb"]["project"],
    # `.venv/bin/snakemake` without an activated venv: jobs still find `myjepa` and its python
    PATH=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    ),
)


def stamp(obj):
    """A short digest of a job's settings: a pretraining checkpoint is resumed only under the same one."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def res(rule_name, key):
    return config["resources"][rule_name][key]


def pretrain_settings(wildcards):
    """Exactly what defines a pretraining run: a change here reruns it and everything downstream."""
    run = RUNS[wildcards.run]
    return {
        "config": run["config"],
        "datasets": run["datasets"],
        "set": run["set"],
        "seed": int(wildcards.seed),
        "amp": config["pretrain"]["amp"],
        "compile": config["pretrain"]["compile"],
    }


def finetune_settings(wildcards):
    """Exactly what defines one evaluation job (besides its inputs)."""
    protocol = PROTOCOLS[wildcards.protocol]
    encoder = BASELINES.get(wildcards.encoder, "pretrained")
    return {
        "protocol": {k: protocol[k] for k in ("config", "init", "set")},
        "encoder": encoder,
        "val_fold": config["evaluate"]["val_fold"],
        "test_fold": config["evaluate"]["test_fold"],
    }


# ---- rule inputs and arguments ---------------------------------------------------------------


def ptbxl_tables():
    """PTB-XL's ptbxl_database.csv and scp_statements.csv: synthesised or the configured ones."""
    if SYNTH_PTBXL:
        return {"db": rules.synth_ptbxl.output.db, "scp": rules.synth_ptbxl.output.scp}
    return {
        "db": f"{PTBXL['raw']}/ptbxl_database.csv",
        "scp": f"{PTBXL['raw']}/scp_statements.csv",
    }


def mimic_records():
    if MIMIC["raw"]:
        return f"{MIMIC['raw']}/record_list.csv"
    return rules.synth_mimic.output.records


def mimic_parts(key):
    return expand(rules.convert_mimic_shard.output[key], shard=range(1, SHARDS + 1))


def pretrain_inputs(wildcards):
    """The model YAML and each dataset's dump with its stats."""
    run = RUNS[wildcards.run]
    inputs = {"model": config_file(run["config"], "pretrain")}
    for name in run["datasets"]:
        files = dump_files(dump_path(name))
        inputs[f"{name}_npy"] = files["npy"]
        inputs[f"{name}_stats"] = files["stats"]
    return inputs


def pretrain_stamp(wildcards):
    """Settings and model YAML content; the shell adds the dumps' stats (they do not exist yet here).

    The YAML is read here, on the host: inside a container its path may not exist.
    """
    model_yaml = Path(pretrain_inputs(wildcards)["model"]).read_text()
    return stamp({**pretrain_settings(wildcards), "model_yaml": model_yaml})


def pretrain_stats_files(wildcards):
    """The dumps' stats.json: small files whose content identifies the data (not the dumps themselves)."""
    return [v for k, v in pretrain_inputs(wildcards).items() if k.endswith("_stats")]


def pretrain_args(wildcards):
    """Command-line arguments that follow from the settings (params), so they rerun when changed."""
    settings = pretrain_settings(wildcards)
    datasets = settings["datasets"]
    dumps = " ".join(f"{name}={shlex.quote(dump_path(name))}" for name in datasets)
    args = [f"--data {dumps}"]  # one --data with every dump: the option takes a list
    args.append(f"--config {shlex.quote(settings['config'])}")
    args.append(set_args({"datasets": datasets, **settings["set"]}))
    if settings["amp"]:
        args.append(f"--amp {settings['amp']}")
    if settings["compile"]:
        args.append("--compile")
    return " ".join(args)


FINETUNE_DIR = "results/finetune/{encoder}/{task}/{protocol}/s{seed}"


def finetune_inputs(wildcards):
    """The PTB-XL dump and tables, the finetune config, the encoder and, if any, the init run."""
    protocol = PROTOCOLS[wildcards.protocol]
    dump = dump_files(dump_path("ptb-xl"))
    inputs = {
        "dump": dump["npy"],
        "dump_index": dump["index"],
        "dump_stats": dump["stats"],
        **ptbxl_tables(),
        "protocol": config_file(protocol["config"], "finetune"),
    }
    if wildcards.encoder in PRETRAINED:
        spec = PRETRAINED[wildcards.encoder]
        inputs["encoder"] = expand(rules.pretrain.output.encoder, **spec)[0]
    else:  # a random-init baseline: the model config is the encoder
        inputs["encoder"] = config_file(BASELINES[wildcards.encoder], "pretrain")
    if protocol["init"]:
        init = {**wildcards, "protocol": protocol["init"]}
        inputs["init"] = expand(rules.finetune.output.ckpt, **init)[0]
    return inputs


def finetune_args(wildcards, input):
    settings = finetune_settings(wildcards)
    protocol = settings["protocol"]
    encoder = settings["encoder"] if wildcards.encoder in BASELINES else input.encoder
    args = [
        f"--encoder {shlex.quote(encoder)}",
        f"--config {shlex.quote(protocol['config'])}",
        set_args(protocol["set"]),
        f"--val-fold {settings['val_fold']} --test-fold {settings['test_fold']}",
    ]
    if protocol["init"]:
        args.append(f"--init {shlex.quote(input.init)}")
    return " ".join(a for a in args if a)


def all_finetunes(key):
    """One output (`key`) of every finetune job, in a stable order."""
    return [
        expand(rules.finetune.output[key], encoder=e, task=t, protocol=p, seed=s)[0]
        for e in ENCODERS
        for t in TASKS
        for p in PROTOCOLS
        for s in SEEDS_EVAL
    ]


def all_encoders():
    """encoder.pt of every pretraining run."""
    return [
        expand(rules.pretrain.output.encoder, **spec)[0] for spec in PRETRAINED.values()
    ]


def encoder_table():
    """encoder -> what it is; the report pairs each pretrained run with its random-init baseline."""
    table = {}
    for name, spec in PRETRAINED.items():
        run = RUNS[spec["run"]]
        baseline = f"random-{model_name(run['config'])}"
        table[name] = {
            "kind": "pretrained",
            "group": spec["run"],
            "model": run["config"],
            "pretrain_seed": spec["seed"],
            "baseline": baseline if baseline in BASELINES else None,
            "datasets": run["datasets"],
        }
    for name, model in BASELINES.items():
        table[name] = {
            "kind": "random",
            "group": name,
            "model": model,
            "pretrain_seed": None,
            "baseline": None,
            "datasets": {},
        }
    return table

"""Config validation, the tables the rules use, and the rules' input and params functions.

The checks live in myjepa.workflow, the command-line pieces in myjepa.workflow_commands, where they are
unit-tested.
"""

import json  # json, os, shlex: also for the rules' params
import os
import shlex
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

try:
    from myjepa import workflow as wf
    from myjepa import workflow_commands as commands
    from myjepa.config import read_yaml
except ImportError as e:
    raise WorkflowError(
        f"the myjepa package is not importable by snakemake ({e}): run .ci/install"
    ) from None


def config_error(message):
    raise WorkflowError(f"config: {message}")


# ---- validation: the schema (fills defaults), then what only the package knows ------------------

# `snakemake --config 'evaluate={val_fold: 8}'` passes nested values as text: typed where the schema says
SCHEMA = Path(workflow.basedir) / "schemas" / "config.schema.yaml"
config.update(wf.typed_values(config, read_yaml(SCHEMA)))
try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError as e:
    if not isinstance(e.__context__, jsonschema.ValidationError):
        raise  # validate() raises from inside its `except ValidationError`
    config_error(wf.schema_message(e.__context__))

try:
    wf.check_config(config)
    RUNS = wf.runs_by_name(config["pretrain"]["runs"])
    PRETRAINED = wf.pretrained_encoders(RUNS, config["pretrain"]["seeds"])
    BASELINES = wf.baseline_encoders(RUNS) if config["evaluate"]["baseline"] else {}
    ENCODERS = wf.encoder_names(PRETRAINED, BASELINES)
    PROTOCOLS = wf.protocols_by_name(config["evaluate"]["protocols"])
    wf.check_config_files(RUNS, PROTOCOLS, config["data"])
    PRETRAIN_NODES = commands.pretrain_nodes(
        workflow.resource_settings.overwrite_resources
    )
except wf.ConfigError as e:
    config_error(e)

TASKS = config["evaluate"]["tasks"]
SEEDS_EVAL = config["evaluate"]["seeds"]
# jobs inherit the environment: the wandb switch, and PATH to this interpreter's `myjepa`
os.environ.update(commands.job_environment(config["wandb"], os.environ.get("PATH", "")))

# ---- data: synthetic unless a raw directory or a ready-made dump is configured -------------------

PTBXL = config["data"]["ptb_xl"]
SYNTH_PTBXL = not PTBXL["raw"]
PRETRAIN_DATA = {entry["name"]: entry for entry in config["data"]["pretrain"]}
CONVERTED = [n for n, e in PRETRAIN_DATA.items() if not e["dump"]]  # built here
SYNTHETIC = [n for n, e in PRETRAIN_DATA.items() if not (e["raw"] or e["dump"])]


def ptbxl_source_rate():
    return 500 if SYNTH_PTBXL else PTBXL["source_rate"]


def dump_path(name):
    """The dump of dataset `name`: ready-made if configured, else the converter's output."""
    if name == wf.EVALUATION_DUMP:
        return PTBXL["dump"] or rules.convert_ptbxl.output.npy
    return (
        PRETRAIN_DATA[name]["dump"]
        or expand(rules.merge_shards.output.npy, name=name)[0]
    )


def ptbxl_tables():
    """PTB-XL's ptbxl_database.csv and scp_statements.csv: synthesised or the configured ones."""
    if SYNTH_PTBXL:
        return {"db": rules.synth_ptbxl.output.db, "scp": rules.synth_ptbxl.output.scp}
    return {
        "db": f"{PTBXL['raw']}/ptbxl_database.csv",
        "scp": f"{PTBXL['raw']}/scp_statements.csv",
    }


def raw_dir(wildcards):
    """The raw directory of pretraining archive `name`: configured, or the synthetic one."""
    entry = PRETRAIN_DATA[wildcards.name]
    return (
        entry["raw"] or expand(rules.synth_archive.output.dir, name=wildcards.name)[0]
    )


def shard_parts(key):
    """One output (`key`) of every shard of pretraining archive `name`."""
    return lambda w: expand(
        rules.convert_shard.output[key],
        name=w.name,
        shard=range(1, PRETRAIN_DATA[w.name]["shards"] + 1),
    )


def convert_options(wildcards):
    """The `myjepa convert` options a data.pretrain entry sets."""
    entry = PRETRAIN_DATA[wildcards.name]
    highpass = f" --highpass {entry['highpass']}" if entry["highpass"] else ""
    return f"--windows {entry['windows']}{highpass} --max-skip-fraction {entry['max_skip_fraction']}"


def res(rule_name, key):
    return config["resources"][rule_name][key]


# ---- pretraining ---------------------------------------------------------------------------------


def pretrain_settings(wildcards):
    """Exactly what defines a pretraining run: a change here reruns it and everything downstream."""
    return commands.pretrain_settings(
        RUNS[wildcards.run], int(wildcards.seed), config["pretrain"]
    )


def pretrain_container():
    """The image Snakemake runs a pretrain job in: none for a job over several nodes, whose srun tasks
    each start the image themselves (myjepa/cluster/launch.py)."""
    return None if PRETRAIN_NODES > 1 else config["container"]["image"]


def pretrain_launch(wildcards, resources, threads):
    """The command that starts `myjepa pretrain` in a job: directly, torchrun on one node, or srun over
    PRETRAIN_NODES nodes, in the image when Snakemake runs with --sdm apptainer."""
    deployment = workflow.deployment_settings
    apptainer = "apptainer" in {str(m) for m in deployment.deployment_method}
    image = config["container"]["image"] if apptainer else None
    return commands.pretrain_launch(
        PRETRAIN_NODES,
        int(resources.get("gpu") or 0),
        resources.get("cpus_per_gpu"),
        threads,
        image,
        deployment.apptainer_args or "",
    )


def pretrain_inputs(wildcards):
    """The model YAML, each dataset's dump with its stats, and the online probe's PTB-XL dump and tables."""
    run = RUNS[wildcards.run]
    inputs = {"model": wf.config_file(run["config"], "pretrain")}
    for name in run["datasets"]:
        files = wf.dump_files(dump_path(name))
        inputs[f"{name}_npy"] = files["npy"]
        inputs[f"{name}_stats"] = files["stats"]
    probe = wf.dump_files(dump_path("ptb-xl"))
    return inputs | {f"probe_{k}": v for k, v in probe.items()} | ptbxl_tables()


def pretrain_args(wildcards):
    """Command-line arguments that follow from the settings (params), so they rerun when changed.

    The online probe trains on PTB-XL's train folds and validates on the evaluation's val_fold.
    """
    settings = pretrain_settings(wildcards)
    probe = {
        "dump": dump_path("ptb-xl"),
        "tables": os.path.dirname(ptbxl_tables()["db"]),
        "val_fold": config["evaluate"]["val_fold"],
        "test_fold": config["evaluate"]["test_fold"],
    }
    return commands.pretrain_args(
        settings, {n: dump_path(n) for n in settings["datasets"]}, probe
    )


# ---- evaluation ----------------------------------------------------------------------------------

FINETUNE_DIR = "results/finetune/{encoder}/{task}/{protocol}/s{seed}"


def finetune_settings(wildcards):
    """Exactly what defines one evaluation job (besides its inputs)."""
    protocol = PROTOCOLS[wildcards.protocol]
    return {
        "protocol": {k: protocol[k] for k in ("config", "init", "set")},
        "encoder": BASELINES.get(wildcards.encoder, "pretrained"),
        "val_fold": config["evaluate"]["val_fold"],
        "test_fold": config["evaluate"]["test_fold"],
    }


def finetune_inputs(wildcards):
    """The PTB-XL dump and tables, the finetune config, the encoder and, if any, the init run."""
    protocol = PROTOCOLS[wildcards.protocol]
    dump = wf.dump_files(dump_path("ptb-xl"))
    inputs = {
        "dump": dump["npy"],
        "dump_index": dump["index"],
        "dump_stats": dump["stats"],
        **ptbxl_tables(),
        "protocol": wf.config_file(protocol["config"], "finetune"),
    }
    if wildcards.encoder in PRETRAINED:
        spec = PRETRAINED[wildcards.encoder]
        inputs["encoder"] = expand(rules.pretrain.output.encoder, **spec)[0]
    else:  # a random-init baseline: the model config is the encoder
        inputs["encoder"] = wf.config_file(BASELINES[wildcards.encoder], "pretrain")
    if protocol["init"]:
        init = {**wildcards, "protocol": protocol["init"]}
        inputs["init"] = expand(rules.finetune.output.ckpt, **init)[0]
    return inputs


def finetune_args(wildcards, input):
    """A baseline is passed by its config name (resolved by the command), a pretrained one by path."""
    settings = finetune_settings(wildcards)
    encoder = input.encoder if wildcards.encoder in PRETRAINED else settings["encoder"]
    init = input.init if settings["protocol"]["init"] else None
    return commands.finetune_args(settings, encoder, init)


# ---- releases ------------------------------------------------------------------------------------


def release_inputs(wildcards):
    """A pretrained encoder's encoder.pt, and its finetune results (the model card's evaluation table)."""
    return {
        "encoder": expand(
            rules.pretrain.output.encoder, **PRETRAINED[wildcards.encoder]
        )[0],
        "results": expand(
            rules.finetune.output.results,
            encoder=wildcards.encoder,
            task=TASKS,
            protocol=list(PROTOCOLS),
            seed=SEEDS_EVAL,
        ),
    }


def all_releases():
    """MODEL_CARD.md of every pretrained encoder's release."""
    return [expand(rules.export.output.card, encoder=e)[0] for e in PRETRAINED]


CLASSIFIER_DIR = "results/classifiers/{encoder}/{task}/{protocol}/s{seed}"


def all_classifiers():
    """MODEL_CARD.md of every finetuned model's classifier release."""
    return every_job(rules.export_classifier.output.card)


# ---- report --------------------------------------------------------------------------------------


def every_job(pattern):
    """`pattern` for every (encoder, task, protocol, seed) evaluated, in a stable order."""
    return [
        expand(pattern, encoder=e, task=t, protocol=p, seed=s)[0]
        for e in ENCODERS
        for t in TASKS
        for p in PROTOCOLS
        for s in SEEDS_EVAL
    ]


def all_finetunes(key):
    """One output (`key`) of every finetune job."""
    return every_job(rules.finetune.output[key])


def pretrain_dump_stats():
    """stats.json of every dump some pretraining run samples, for the report's data table."""
    names = sorted({name for run in RUNS.values() for name in run["datasets"]})
    return [wf.dump_files(dump_path(name))["stats"] for name in names]


def all_encoders():
    """encoder.pt of every pretraining run."""
    return [
        expand(rules.pretrain.output.encoder, **spec)[0] for spec in PRETRAINED.values()
    ]

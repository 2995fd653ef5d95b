"""myjepa.workflow: the config checks, tables and command-line pieces of the Snakemake workflow,
without running Snakemake."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from myjepa import workflow as wf
from myjepa import workflow_commands as commands
from myjepa.models.config import ENCODER_KEYS
from myjepa.pretrain import train as pretrain
from myjepa.pretrain.options import RUN_OPTIONS
from myjepa.tasks.names import TASKS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def with_defaults(config: dict) -> dict:
    """Validate against the workflow's schema and fill its defaults, as snakemake.utils.validate does."""
    base = jsonschema.Draft202012Validator
    properties = base.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, schema):
        for key, sub in props.items():
            if "default" in sub:
                instance.setdefault(key, sub["default"])
        yield from properties(validator, props, instance, schema)

    jsonschema.validators.extend(base, {"properties": set_defaults})(SCHEMA).validate(config)
    return config


def schema_error(config: dict) -> jsonschema.ValidationError:
    with pytest.raises(jsonschema.ValidationError) as info:
        with_defaults(config)
    return info.value


def merge(base: dict, top: dict) -> dict:
    return {**base, **{k: merge(base.get(k, {}), v) if isinstance(v, dict) else v for k, v in top.items()}}


def shipped(name: str) -> dict:
    """A shipped config file on top of the default one, as `--configfile config.yaml NAME.yaml` gives."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return with_defaults(merge(config, yaml.safe_load((ROOT / "config" / name).read_text())))


def run(name: str = "a", **changes) -> dict:
    return {"name": name, "config": "tiny", "datasets": {"mimic-iv-ecg": 1.0}, "set": {}, **changes}


def protocol(name: str = "linear", **changes) -> dict:
    return {"name": name, "config": "linear", "init": None, "set": {}, **changes}


# ---- schema errors as one line -------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, message",
    [
        ({"evaluate": {"taks": ["rhythm"]}}, "evaluate: unknown key 'taks' (did you mean 'tasks'?)"),
        ({"wandb": {"x": 1}}, "wandb: unknown key 'x' (allowed: enabled, project)"),
        (
            {"qq": 1},
            "(top level): unknown key 'qq' (allowed: data, synth, convert, pretrain, evaluate, wandb, container, "
            "resources)",
        ),
        ({"convert": {"shards": 2}}, "convert: unknown key 'shards' (allowed: max_skip_fraction)"),
        ({"pretrain": {"seeds": []}}, "pretrain.seeds: [] should be non-empty"),
        ({"evaluate": {"tasks": [1]}}, "evaluate.tasks.0: 1 is not of type 'string'"),
        ({"pretrain": {"runs": [{"name": "a-b"}]}}, "pretrain.runs.0.name: 'a-b' does not match '^[A-Za-z0-9_.]+$'"),
    ],
)
def test_schema_message_names_the_key(config, message):
    assert wf.schema_message(schema_error(config)) == message


def test_schema_leaves_tasks_and_dump_names_to_the_package():
    """One home for each list: the schema only says they are strings."""
    run_schema = SCHEMA["properties"]["pretrain"]["properties"]["runs"]["items"]
    assert "propertyNames" not in run_schema["properties"]["datasets"]
    assert "enum" not in SCHEMA["properties"]["evaluate"]["properties"]["tasks"]["items"]
    with_defaults({"evaluate": {"tasks": ["rythm"]}, "pretrain": {"runs": [run(datasets={"ptbxl": 1.0})]}})


# ---- checks beyond the schema --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["config.yaml", "ci.yaml"])
def test_shipped_configs_pass(name):
    config = shipped(name)
    wf.check_config(config)
    runs = wf.runs_by_name(config["pretrain"]["runs"])
    wf.check_config_files(runs, wf.protocols_by_name(config["evaluate"]["protocols"]))


def test_real_config_passes_with_its_directories(tmp_path):
    config = shipped("real.yaml")
    config["data"]["ptb_xl"]["raw"] = str(tmp_path)
    for entry in config["data"]["pretrain"]:
        entry["raw"] = str(tmp_path)
    wf.check_config(config)
    runs = wf.runs_by_name(config["pretrain"]["runs"])
    assert set(wf.dataset_names(config["data"])) == set(runs["ViTS_all"]["datasets"])  # all ten
    assert sum(runs["ViTS_all"]["datasets"].values()) == pytest.approx(1.0)
    wf.check_config_files(
        wf.runs_by_name(config["pretrain"]["runs"]), wf.protocols_by_name(config["evaluate"]["protocols"])
    )


@pytest.mark.parametrize(
    "given, typed",
    [
        ({"evaluate": {"val_fold": "8", "baseline": "false"}}, {"evaluate": {"val_fold": 8, "baseline": False}}),
        ({"data": {"fs": "250", "pretrain": [{"name": "7", "highpass": "0.5"}]}},  # a name stays text
         {"data": {"fs": 250, "pretrain": [{"name": "7", "highpass": 0.5}]}}),
        ({"data": {"pretrain": [{"name": "x", "highpass": "null"}]}},
         {"data": {"pretrain": [{"name": "x", "highpass": None}]}}),
        ({"pretrain": {"runs": [{"datasets": {"a": "0.5"}, "set": {"steps": "3"}}]}},  # `set` goes to --set as text
         {"pretrain": {"runs": [{"datasets": {"a": 0.5}, "set": {"steps": "3"}}]}}),
        ({"resources": {"pretrain": {"gpu": "2"}}}, {"resources": {"pretrain": {"gpu": 2}}}),  # through a $ref
        ({"evaluate": {"val_fold": "eight", "seeds": ["1", "x"]}},
         {"evaluate": {"val_fold": "eight", "seeds": [1, "x"]}}),
        ({"synth": {"seed": "true"}}, {"synth": {"seed": "true"}}),  # a boolean is no integer
    ],
)  # fmt: skip
def test_text_values_are_typed_where_the_schema_types_them(given, typed):
    assert wf.typed_values(given, SCHEMA) == typed


def test_a_runs_model_takes_the_rate_of_every_dump_it_reads(tmp_path):
    config = shipped("config.yaml")
    runs, protocols = wf.runs_by_name(config["pretrain"]["runs"]), wf.protocols_by_name(config["evaluate"]["protocols"])
    wf.check_config_files(runs, protocols, config["data"])
    stats = tmp_path / "ptb.stats.json"
    stats.write_text('{"fs": 100}')
    config["data"]["ptb_xl"].update(raw=str(tmp_path), dump=str(tmp_path / "ptb.npy"))
    with pytest.raises(wf.ConfigError) as info:
        wf.check_config_files(runs, protocols, config["data"])
    assert str(info.value).startswith(
        f"pretrain.runs[tiny]: its model (tiny) takes 500 Hz, but data.ptb_xl.dump {tmp_path}/ptb.npy is at 100 Hz "
        "(ptb.stats.json); every dump a run reads (its datasets, and ptb-xl for the online probe and the evaluation)"
    )
    stats.unlink()  # not made yet: its rate is checked when it is read
    wf.check_config_files(runs, protocols, config["data"])


def test_every_task_of_the_package_is_accepted():
    wf.check_config(with_defaults({"evaluate": {"tasks": list(TASKS)}}))


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"evaluate": {"tasks": ["rythm"]}},
            "evaluate.tasks.0: 'rythm' is not one of "
            "['all', 'diagnostic', 'subdiagnostic', 'superdiagnostic', 'form', 'rhythm', 'ST-MEM']",
        ),
        ({"evaluate": {"tasks": ["rhythm", "Form"]}}, "evaluate.tasks.1: 'Form' is not one of ['all', "),
        (
            {"pretrain": {"runs": [run(datasets={"ptbxl": 1.0})]}},
            "pretrain.runs.0.datasets: 'ptbxl' is not one of ['mimic-iv-ecg', 'ptb-xl']",
        ),
        (
            {"pretrain": {"runs": [run(), run("b", datasets={"ptb-xl": 1.0, "zzz": 2.0})]}},
            "pretrain.runs.1.datasets: 'zzz' is not one of ['mimic-iv-ecg', 'ptb-xl']",
        ),
        ({"evaluate": {"val_fold": 10}}, "evaluate.val_fold and evaluate.test_fold must differ"),
        ({"data": {"ptb_xl": {"raw": "/no/such/dir"}}}, "data.ptb_xl.raw: /no/such/dir is not a directory"),
    ],
)
def test_check_config_messages(config, message):
    with pytest.raises(wf.ConfigError) as info:
        wf.check_config(with_defaults(config))
    assert str(info.value).startswith(message)


def test_dump_names_are_the_dumps_the_workflow_builds():
    rules = (ROOT / "workflow" / "rules" / "data.smk").read_text()
    assert wf.dataset_names(shipped("config.yaml")["data"]) == ["mimic-iv-ecg", "code-15", "cpsc", "ptb-xl"]
    assert 'wf.dump_files("results/data/ptb-xl.npy")' in rules and 'wf.dump_files("results/data/{name}.npy")' in rules


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"ptb_xl": {"dump": "x.npy"}},
            "data.ptb_xl.dump needs data.ptb_xl.raw too (its ptbxl_database.csv and scp_statements.csv)",
        ),
        ({"pretrain": [{"name": "m", "archive": "mimic-iv-ecg", "raw": "/no/dir"}]}, "data.pretrain.0.raw: /no/dir is"),
        (
            {"pretrain": [{"name": "m", "archive": "code-15", "dump": "x.np"}]},
            "data.pretrain.0.dump: x.np is not a .npy",
        ),
        ({"pretrain": [{"name": "ptb-xl", "archive": "wfdb"}]}, "data.pretrain.0.name: 'ptb-xl' is used twice"),
        ({"pretrain": [{"name": "m", "archive": "ptb-xl"}]}, "data.pretrain.0.archive: 'ptb-xl' is not one of"),
        ({"pretrain": [{"name": "m", "archive": "hdf5"}]}, "data.pretrain.0.archive: 'hdf5' is not one of"),
    ],
)
def test_check_data_messages(data, message):
    with pytest.raises(wf.ConfigError, match=re.escape(message)):
        wf.check_data(with_defaults({"data": data})["data"])


def test_check_data_accepts_configured_data(tmp_path):
    data = {
        "ptb_xl": {"raw": str(tmp_path), "dump": "ptb.npy"},
        "pretrain": [
            {"name": "m", "archive": "mimic-iv-ecg", "dump": "/d/mimic.npy"},
            {"name": "c", "archive": "code-15"},
        ],
    }
    wf.check_data(with_defaults({"data": data})["data"])


# ---- runs, protocols, encoders -------------------------------------------------------------------


def test_runs_by_name():
    runs = wf.runs_by_name([run("a"), run("b", set={"steps": 3})])
    assert list(runs) == ["a", "b"] and runs["b"]["set"] == {"steps": 3}
    with pytest.raises(wf.ConfigError, match=re.escape("pretrain.runs: the name 'a' is used twice")):
        wf.runs_by_name([run("a"), run("a")])
    with pytest.raises(wf.ConfigError, match=re.escape("pretrain.runs[a].set: give the data sources in the run's")):
        wf.runs_by_name([run(set={"datasets": {"ptb-xl": 1.0}})])


def test_runs_refuse_every_architecture_key():
    """The keys come from the encoder's config, not from a copy."""
    assert wf.ENCODER_KEYS is ENCODER_KEYS
    for key in ENCODER_KEYS:
        with pytest.raises(wf.ConfigError, match=re.escape(f"pretrain.runs[a].set changes the architecture ({key})")):
            wf.runs_by_name([run(set={key: 1, "steps": 5})])
    with pytest.raises(wf.ConfigError) as info:
        wf.runs_by_name([run(set={"dim": 64, "depth": 2})])
    assert str(info.value) == (
        "pretrain.runs[a].set changes the architecture (depth, dim): put those keys in a model YAML and name it "
        "in `config`, so the random-init baseline has the same architecture"
    )


def test_protocols_by_name():
    protocols = wf.protocols_by_name(
        [protocol("linear"), protocol("ft", config="finetune_after_linear", init="linear")]
    )
    assert list(protocols) == ["linear", "ft"]


@pytest.mark.parametrize(
    "protocols, message",
    [
        ([protocol("ft"), protocol("ft")], "evaluate.protocols: the name 'ft' is used twice"),
        (
            [protocol("ft", config="finetune_after_linear")],
            "evaluate.protocols[ft]: finetune_after_linear needs `init: <name of a linear protocol>`",
        ),
        (
            [protocol("ft", init="nope")],
            "evaluate.protocols[ft].init: 'nope' is not another protocol of evaluate.protocols (ft)",
        ),
        (
            [protocol("a"), protocol("ft", init="ft")],
            "evaluate.protocols[ft].init: 'ft' is not another protocol of evaluate.protocols (a, ft)",
        ),
    ],
)
def test_protocol_messages(protocols, message):
    with pytest.raises(wf.ConfigError) as info:
        wf.protocols_by_name(protocols)
    assert str(info.value) == message


def test_encoders():
    runs = wf.runs_by_name([run("a"), run("b", config="models/big.yaml"), run("c")])
    pretrained = wf.pretrained_encoders(runs, [42, 43])
    assert list(pretrained) == ["a-s42", "a-s43", "b-s42", "b-s43", "c-s42", "c-s43"]
    assert pretrained["b-s43"] == {"run": "b", "seed": 43}
    baselines = wf.baseline_encoders(runs)
    assert baselines == {"random-tiny": "tiny", "random-big": "models/big.yaml"}
    assert wf.encoder_names(pretrained, baselines) == [*pretrained, "random-tiny", "random-big"]
    assert wf.model_name("tiny") == "tiny" and wf.model_name("a/b/ViT.yml") == "ViT"


def test_encoder_name_errors():
    runs = wf.runs_by_name([run("a", config="x/big.yaml"), run("b", config="y/big.yaml")])
    with pytest.raises(wf.ConfigError, match=re.escape("two model configs are both called 'big'; rename one file")):
        wf.baseline_encoders(runs)
    runs = wf.runs_by_name([run("random", config="s1.yaml")])
    with pytest.raises(wf.ConfigError, match=re.escape("gives encoder 'random-s1', the name of a random-init")):
        wf.encoder_names(wf.pretrained_encoders(runs, [1]), wf.baseline_encoders(runs))


def test_encoder_table_pairs_runs_with_their_baseline():
    runs = wf.runs_by_name([run("a", datasets={"ptb-xl": 1.0})])
    pretrained = wf.pretrained_encoders(runs, [7])
    table = wf.encoder_table(runs, pretrained, wf.baseline_encoders(runs))
    assert table == {
        "a-s7": {
            "kind": "pretrained",
            "group": "a",
            "model": "tiny",
            "pretrain_seed": 7,
            "baseline": "random-tiny",
            "datasets": {"ptb-xl": 1.0},
        },
        "random-tiny": {
            "kind": "random",
            "group": "random-tiny",
            "model": "tiny",
            "pretrain_seed": None,
            "baseline": None,
            "datasets": {},
        },
    }
    assert wf.encoder_table(runs, pretrained, {})["a-s7"]["baseline"] is None  # evaluate.baseline: false


# ---- config files --------------------------------------------------------------------------------


def test_config_file(tmp_path):
    assert wf.config_file("tiny", "pretrain").endswith("myjepa/pretrain/configs/tiny.yaml")
    assert wf.config_file("linear", "finetune").endswith("myjepa/evaluate/configs/linear.yaml")
    own = tmp_path / "mine.yaml"
    own.write_text("{}\n")
    assert wf.config_file(str(own), "pretrain") == str(own)
    with pytest.raises(wf.ConfigError, match=re.escape(f"config: config file not found: {tmp_path}/no.yaml")):
        wf.config_file(str(tmp_path / "no.yaml"), "finetune")


def test_check_config_files_names_the_key():
    with pytest.raises(wf.ConfigError) as info:
        wf.check_config_files(wf.runs_by_name([run(config="ViTM_mimic")]), {})
    assert str(info.value).startswith("pretrain.runs[a].config: unknown config 'ViTM_mimic': not a .yaml path")
    with pytest.raises(wf.ConfigError) as info:
        wf.check_config_files({}, wf.protocols_by_name([protocol("p", config="nope")]))
    assert str(info.value) == (
        "evaluate.protocols[p].config: unknown config 'nope': not a .yaml path and not one of the shipped configs "
        "['finetune', 'finetune_after_linear', 'linear']"
    )


@pytest.mark.parametrize(
    "runs, protocols, message",
    [
        ([run(set={"lr": "fast"})], [], "pretrain.runs[a].set: key 'lr': expected a number, got 'fast'"),
        ([run(set={"lr": float("nan")})], [], "pretrain.runs[a].set: key 'lr': expected a finite number, got 'nan'"),
        ([run(set={"warmup_steps": -5})], [], "pretrain.runs[a]: warmup_steps must be 0 or more, got -5"),
        ([run(set={"steps": 0})], [], "pretrain.runs[a]: batch_size, steps and accum_steps must be positive"),
        ([run(datasets={"ptb-xl": 1.0}, set={"folds": "all"})], [], "pretrain.runs[a].set: key 'folds': expected a"),
        ([], [protocol(set={"patience": 1.5})], "evaluate.protocols[linear].set: key 'patience': expected an integer"),
        ([], [protocol(set={"protocl": "linear"})], "evaluate.protocols[linear].set: unknown key 'protocl' (did you"),
    ],
)
def test_check_config_files_loads_every_override(runs, protocols, message):
    """A bad `set:` fails when the DAG is built (snakemake -n), as the job's own loader would fail it."""
    with pytest.raises(wf.ConfigError) as info:
        wf.check_config_files(wf.runs_by_name(runs), wf.protocols_by_name(protocols))
    assert str(info.value).startswith(message), str(info.value)
    wf.check_config_files(wf.runs_by_name([run(set={"lr": 0.5, "betas": [0.9, 0.95]})]), {})


# ---- command lines and environment ---------------------------------------------------------------


def test_set_args():
    assert commands.set_args({}) == ""
    assert commands.set_args({"steps": 300, "lr": 0.5}) == "--set steps=300 --set lr=0.5"
    assert commands.set_args({"betas": [0.9, 0.99], "amp": None, "compile": True}) == (
        "--set 'betas=[0.9, 0.99]' --set amp=null --set compile=true"
    )
    assert commands.set_args({"datasets": {"ptb-xl": 1.0}}) == """--set 'datasets={"ptb-xl": 1.0}'"""
    assert commands.set_args({"name": "a b"}) == "--set 'name=a b'"


def pretrain_settings(**changes) -> dict:
    return {
        "config": "tiny",
        "datasets": {"mimic-iv-ecg": 1.0},
        "set": {},
        "seed": 42,
        "amp": None,
        "compile": False,
        **changes,
    }


def test_pretrain_args():
    dumps = {"mimic-iv-ecg": "results/data/mimic-iv-ecg.npy", "ptb-xl": "/data dir/ptb-xl.npy"}
    probe = {"dump": "/data dir/ptb-xl.npy", "tables": "/data dir/ptb-xl", "val_fold": 9, "test_fold": 10}
    probe_args = (
        "--probe-data '/data dir/ptb-xl.npy' --probe-labels '/data dir/ptb-xl' --probe-val-fold 9 --probe-test-fold 10"
    )
    assert commands.pretrain_args(pretrain_settings(), dumps, probe) == (
        "--data mimic-iv-ecg=results/data/mimic-iv-ecg.npy --config tiny --set 'datasets={\"mimic-iv-ecg\": 1.0}' "
        + probe_args
    )
    settings = pretrain_settings(
        config="my model.yaml",
        datasets={"mimic-iv-ecg": 1.0, "ptb-xl": 0.5},
        set={"steps": 10},
        amp="bfloat16",
        compile=True,
    )
    assert commands.pretrain_args(settings, dumps, probe) == (
        "--data mimic-iv-ecg=results/data/mimic-iv-ecg.npy ptb-xl='/data dir/ptb-xl.npy' --config 'my model.yaml' "
        '--set \'datasets={"mimic-iv-ecg": 1.0, "ptb-xl": 0.5}\' --set steps=10 --amp bfloat16 --compile ' + probe_args
    )


def test_pretrain_settings_are_the_run_options_that_define_a_run():
    """The job's settings hold every option `myjepa pretrain` says defines a run, so changing one reruns the job,
    and its arguments pass each of them on."""
    run = {"config": "tiny", "datasets": {"ptb-xl": 1.0}, "set": {"steps": 3}}
    settings = commands.pretrain_settings(run, 7, {"amp": "float32", "compile": True, "seeds": [7], "runs": [run]})
    assert settings == pretrain_settings(
        datasets={"ptb-xl": 1.0}, set={"steps": 3}, seed=7, amp="float32", compile=True
    )
    assert list(settings)[3:] == list(RUN_OPTIONS) == ["seed", "amp", "compile"]
    dumps = {"ptb-xl": "p.npy"}
    probe = {"dump": "p.npy", "tables": "t", "val_fold": 9, "test_fold": 10}
    assert "--set steps=3 --amp float32 --compile --probe-data" in commands.pretrain_args(settings, dumps, probe)
    rule = (ROOT / "workflow" / "rules" / "pretrain.smk").read_text()  # the rule passes the job's seed itself
    assert "{params.args} --out {params.dir} --seed {wildcards.seed}" in rule
    words = shlex.split(commands.pretrain_args(settings, dumps, probe)) + ["--out", "o", "--seed", "7"]
    args = pretrain.parse_args(words)
    options = pretrain.run_options(args)
    assert {name: getattr(options, name) for name in RUN_OPTIONS} == {"seed": 7, "amp": "float32", "compile": True}


def test_finetune_args():
    settings = {
        "protocol": {"config": "finetune_after_linear", "init": "linear", "set": {"steps": 5}},
        "encoder": "pretrained",
        "val_fold": 9,
        "test_fold": 10,
    }
    assert commands.finetune_args(settings, "results/pretrain/a/s1/encoder.pt", "results/x/best_ckpt.pt") == (
        "--encoder results/pretrain/a/s1/encoder.pt --config finetune_after_linear --set steps=5 "
        "--val-fold 9 --test-fold 10 --init results/x/best_ckpt.pt"
    )
    settings = {**settings, "protocol": {"config": "linear", "init": None, "set": {}}}
    assert commands.finetune_args(settings, "tiny") == "--encoder tiny --config linear --val-fold 9 --test-fold 10"


def test_job_environment():
    env = commands.job_environment({"enabled": True, "project": "p"}, "/usr/bin", executable="/venv/bin/python")
    assert env == {"MYJEPA_WANDB": "--wandb", "WANDB_PROJECT": "p", "PATH": f"/venv/bin{os.pathsep}/usr/bin"}
    env = commands.job_environment({"enabled": False, "project": "myjepa"})
    assert env["MYJEPA_WANDB"] == "" and env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_alternatives_match_exactly_the_names():
    pattern = re.compile(f"^(?:{wf.alternatives(['a.b', 'ViTS_mimic-s42', 7])})$")
    assert all(pattern.match(n) for n in ("a.b", "ViTS_mimic-s42", "7"))
    assert not any(pattern.match(n) for n in ("axb", "ViTS_mimic", "77"))


def test_dump_files():
    assert wf.dump_files("results/data/ptb-xl.npy") == {
        "npy": "results/data/ptb-xl.npy",
        "index": "results/data/ptb-xl.index.csv",
        "stats": "results/data/ptb-xl.stats.json",
    }


def test_import_is_light():
    """Snakemake imports the module while parsing the workflow: no torch, no pandas."""
    code = "import sys, myjepa.workflow; print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"

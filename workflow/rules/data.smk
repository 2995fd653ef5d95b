# Raw data -> dumps: PTB-XL (evaluation) and every data.pretrain archive (shards, then merged). Without
# configured raw data, synthetic datasets in the real layouts stand in.


rule synth_ptbxl:
    output:
        db="results/raw/ptb-xl/ptbxl_database.csv",
        scp="results/raw/ptb-xl/scp_statements.csv",
    log:
        "logs/synth/ptb-xl.log",
    benchmark:
        "logs/benchmarks/synth/ptb-xl.tsv"
    threads: res("synth", "threads")
    resources:
        mem_mb=res("synth", "mem_mb"),
        runtime=res("synth", "runtime"),
    params:
        records=config["synth"]["ptb_xl_records"],
        seed=config["synth"]["seed"],
        out=lambda w, output: os.path.dirname(output.db),
    shell:
        "myjepa synth --layout ptb-xl --out {params.out} --records {params.records}"
        " --seed {params.seed} --workers {threads} --overwrite 2>&1 | tee {log}"


rule synth_archive:
    output:
        dir=directory("results/raw/{name}"),
    log:
        "logs/synth/{name}.log",
    benchmark:
        "logs/benchmarks/synth/{name}.tsv"
    wildcard_constraints:
        name=wf.alternatives(SYNTHETIC),
    threads: res("synth", "threads")
    resources:
        mem_mb=res("synth", "mem_mb"),
        runtime=res("synth", "runtime"),
    params:
        layout=lambda w: PRETRAIN_DATA[w.name]["archive"],
        records=lambda w: PRETRAIN_DATA[w.name]["synth_records"],
        seed=lambda w: config["synth"]["seed"] + 1 + list(PRETRAIN_DATA).index(w.name),
    shell:
        "myjepa synth --layout {params.layout} --out {output.dir} --records {params.records}"
        " --seed {params.seed} --workers {threads} --overwrite 2>&1 | tee {log}"


rule convert_ptbxl:
    input:
        db=ptbxl_tables()["db"],
    output:
        **wf.dump_files("results/data/ptb-xl.npy"),
    log:
        "logs/convert/ptb-xl.log",
    benchmark:
        "logs/benchmarks/convert/ptb-xl.tsv"
    threads: res("convert", "threads")
    resources:
        mem_mb=res("convert", "mem_mb"),
        runtime=res("convert", "runtime"),
    params:
        src=lambda w, input: os.path.dirname(input.db),
        source_rate=ptbxl_source_rate(),
        fs=config["data"]["fs"],
        max_skip=config["convert"]["max_skip_fraction"],
    shell:
        "myjepa convert ptb-xl --src {params.src} --out {output.npy}"
        " --source-rate {params.source_rate} --fs {params.fs}"
        " --max-skip-fraction {params.max_skip} --workers {threads} 2>&1 | tee {log}"


rule convert_shard:
    input:
        raw=raw_dir,
    output:
        **wf.dump_files("results/data/{name}/part-{shard}.npy"),
    log:
        "logs/convert/{name}-part-{shard}.log",
    benchmark:
        "logs/benchmarks/convert/{name}-part-{shard}.tsv"
    wildcard_constraints:
        name=wf.alternatives(CONVERTED),
    threads: res("convert", "threads")
    resources:
        mem_mb=res("convert", "mem_mb"),
        runtime=res("convert", "runtime"),
    params:
        archive=lambda w: PRETRAIN_DATA[w.name]["archive"],
        shards=lambda w: PRETRAIN_DATA[w.name]["shards"],
        fs=config["data"]["fs"],
        options=convert_options,
    shell:
        "myjepa convert {params.archive} --src {input.raw} --out {output.npy}"
        " --shard {wildcards.shard}/{params.shards} --fs {params.fs} {params.options}"
        " --workers {threads} 2>&1 | tee {log}"


rule merge_shards:
    input:
        parts=shard_parts("npy"),
        index=shard_parts("index"),
        stats=shard_parts("stats"),
    output:
        **wf.dump_files("results/data/{name}.npy"),
    log:
        "logs/convert/{name}-merge.log",
    benchmark:
        "logs/benchmarks/convert/{name}-merge.tsv"
    wildcard_constraints:
        name=wf.alternatives(CONVERTED),
    threads: res("merge", "threads")
    resources:
        mem_mb=res("merge", "mem_mb"),
        runtime=res("merge", "runtime"),
    shell:
        "myjepa convert merge {input.parts} --out {output.npy} 2>&1 | tee {log}"

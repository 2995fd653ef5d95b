# Raw data -> dumps. Without configured raw data, synthetic datasets in the real layouts stand in.


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


rule synth_mimic:
    output:
        records="results/raw/mimic-iv-ecg/record_list.csv",
    log:
        "logs/synth/mimic-iv-ecg.log",
    benchmark:
        "logs/benchmarks/synth/mimic-iv-ecg.tsv"
    threads: res("synth", "threads")
    resources:
        mem_mb=res("synth", "mem_mb"),
        runtime=res("synth", "runtime"),
    params:
        records=config["synth"]["mimic_iv_ecg_records"],
        seed=config["synth"]["seed"] + 1,  # other records than the synthetic PTB-XL's
        out=lambda w, output: os.path.dirname(output.records),
    shell:
        "myjepa synth --layout mimic-iv-ecg --out {params.out} --records {params.records}"
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


rule convert_mimic_shard:
    input:
        records=mimic_records(),
    output:
        **wf.dump_files("results/data/mimic-iv-ecg/part-{shard}.npy"),
    log:
        "logs/convert/mimic-iv-ecg-part-{shard}.log",
    benchmark:
        "logs/benchmarks/convert/mimic-iv-ecg-part-{shard}.tsv"
    threads: res("convert", "threads")
    resources:
        mem_mb=res("convert", "mem_mb"),
        runtime=res("convert", "runtime"),
    params:
        src=lambda w, input: os.path.dirname(input.records),
        shards=SHARDS,
        fs=config["data"]["fs"],
        max_skip=config["convert"]["max_skip_fraction"],
    shell:
        "myjepa convert mimic-iv-ecg --src {params.src} --out {output.npy}"
        " --shard {wildcards.shard}/{params.shards} --fs {params.fs}"
        " --max-skip-fraction {params.max_skip} --workers {threads} 2>&1 | tee {log}"


rule merge_mimic:
    input:
        parts=mimic_parts("npy"),
        index=mimic_parts("index"),
        stats=mimic_parts("stats"),
    output:
        **wf.dump_files("results/data/mimic-iv-ecg.npy"),
    log:
        "logs/convert/mimic-iv-ecg-merge.log",
    benchmark:
        "logs/benchmarks/convert/mimic-iv-ecg-merge.tsv"
    threads: res("merge", "threads")
    resources:
        mem_mb=res("merge", "mem_mb"),
        runtime=res("merge", "runtime"),
    shell:
        "myjepa convert merge {input.parts} --out {output.npy} 2>&1 | tee {log}"

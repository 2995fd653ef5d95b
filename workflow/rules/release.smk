# Releases: every pretrained encoder exported to results/release/{encoder}/ (model.safetensors,
# config.json, MODEL_CARD.md with the encoder's finetune results as its evaluation table); the
# report links each one. Load one with myjepa.load_encoder("results/release/ENCODER").


rule export:
    input:
        unpack(release_inputs),
    output:
        weights="results/release/{encoder}/model.safetensors",
        config="results/release/{encoder}/config.json",
        card="results/release/{encoder}/MODEL_CARD.md",
    log:
        "logs/release/{encoder}.log",
    benchmark:
        "logs/benchmarks/release/{encoder}.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    params:
        dir=lambda w, output: os.path.dirname(output.card),
    shell:
        "myjepa export --encoder {input.encoder} --out {params.dir} --name {wildcards.encoder}"
        " --results {input.results} 2>&1 | tee {log}"

# Releases: every pretrained encoder exported to results/release/{encoder}/ (model.safetensors,
# config.json, MODEL_CARD.md with the encoder's finetune results as its evaluation table), and every
# finetuned model to results/classifiers/{encoder}/{task}/{protocol}/s{seed}/ (the same files and
# head.safetensors; its card: per-class test AUCs, decision thresholds, training data); the report
# links each one. Load them with myjepa.load_encoder(FOLDER) and myjepa.load_classifier(FOLDER), or
# run `myjepa predict --model FOLDER --src RECORDS --out predictions.csv`.


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


rule export_classifier:
    input:
        results=rules.finetune.output.results,
        predictions=rules.finetune.output.predictions,
        ckpt=rules.finetune.output.ckpt,
    output:
        weights=f"{CLASSIFIER_DIR}/model.safetensors",
        head=f"{CLASSIFIER_DIR}/head.safetensors",
        config=f"{CLASSIFIER_DIR}/config.json",
        card=f"{CLASSIFIER_DIR}/MODEL_CARD.md",
    log:
        "logs/release/classifiers/{encoder}/{task}/{protocol}/s{seed}.log",
    benchmark:
        "logs/benchmarks/release/classifiers/{encoder}/{task}/{protocol}/s{seed}.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    params:
        run=lambda w, input: os.path.dirname(input.results),
        dir=lambda w, output: os.path.dirname(output.card),
        name=lambda w: f"{w.encoder}-{w.task}-{w.protocol}-s{w.seed}",
    shell:
        "myjepa export --classifier {params.run} --out {params.dir} --name {params.name}"
        " 2>&1 | tee {log}"

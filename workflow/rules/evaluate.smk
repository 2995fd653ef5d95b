# Evaluation on PTB-XL: every encoder (pretrained runs and random-init baselines) x task x protocol
# x seed. A protocol with `init` starts from the best_ckpt.pt of that protocol's job.


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        results=f"{FINETUNE_DIR}/results.json",
        predictions=f"{FINETUNE_DIR}/predictions.npz",
        ckpt=f"{FINETUNE_DIR}/best_ckpt.pt",
        metrics=f"{FINETUNE_DIR}/metrics.jsonl",
    log:
        "logs/finetune/{encoder}/{task}/{protocol}/s{seed}.log",
    benchmark:
        "logs/benchmarks/finetune/{encoder}/{task}/{protocol}/s{seed}.tsv"
    threads: res("finetune", "threads")
    resources:
        mem_mb=res("finetune", "mem_mb"),
        runtime=res("finetune", "runtime"),
        gpu=res("finetune", "gpu"),
    params:
        settings=finetune_settings,
        args=finetune_args,
        data_dir=lambda w, input: os.path.dirname(input.db),
        dir=lambda w, output: os.path.dirname(output.results),
    shell:
        "myjepa finetune --data-dir {params.data_dir} --dump {input.dump} --task {wildcards.task}"
        " --encoder-name {wildcards.encoder} --protocol-name {wildcards.protocol}"
        " {params.args} --out {params.dir} --seed {wildcards.seed} ${{MYJEPA_WANDB:-}}"
        " 2>&1 | tee {log}"

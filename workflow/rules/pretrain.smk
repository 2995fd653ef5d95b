# Self-supervised pretraining: one run per (pretrain.runs entry x pretrain.seeds).
#
# Only encoder.pt is a declared output. Snakemake deletes declared outputs before a job starts and
# after it fails, so last_ckpt.pt, best_ckpt.pt and metrics.jsonl stay undeclared: a retried or
# requeued job (SIGTERM at the time limit, preemption) resumes from last_ckpt.pt. The stamp file
# guards that resume: when the run's settings or its data changed, the old checkpoints are removed
# and training starts afresh. With resources.gpu > 1 one torchrun starts one process per GPU.


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        encoder="results/pretrain/{run}/s{seed}/encoder.pt",
    log:
        "logs/pretrain/{run}-s{seed}.log",
    benchmark:
        "logs/benchmarks/pretrain/{run}-s{seed}.tsv"
    threads: res("pretrain", "threads")
    resources:
        mem_mb=res("pretrain", "mem_mb"),
        runtime=res("pretrain", "runtime"),
        gpu=res("pretrain", "gpu"),
    params:
        settings=pretrain_settings,
        args=pretrain_args,
        stamp=pretrain_stamp,
        stats=pretrain_stats_files,
        dir=lambda w, output: os.path.dirname(output.encoder),
    shell:
        """
        stamp="{params.stamp} $(cat {params.stats} | cksum | cut -d' ' -f1)"
        if [ "$(cat {params.dir}/.stamp 2>/dev/null)" != "$stamp" ]; then
            rm -f {params.dir}/last_ckpt.pt {params.dir}/best_ckpt.pt {params.dir}/metrics.jsonl
            mkdir -p {params.dir} && echo "$stamp" >{params.dir}/.stamp
        fi
        launch="myjepa pretrain"
        if [ {resources.gpu} -gt 1 ]; then
            launch="torchrun --standalone --nproc_per_node={resources.gpu} -m myjepa.pretrain"
        fi
        $launch {params.args} --out {params.dir} --seed {wildcards.seed} ${{MYJEPA_WANDB:-}} 2>&1 | tee {log}
        """

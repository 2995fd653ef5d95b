# Self-supervised pretraining: one run per (pretrain.runs entry x pretrain.seeds).
#
# Only encoder.pt is a declared output. Snakemake deletes declared outputs before a job starts and
# after it fails, so last_ckpt.pt, best_ckpt.pt and metrics.jsonl stay undeclared: a retried or
# requeued job (SIGTERM at the time limit, preemption) resumes from last_ckpt.pt. With
# --restart-on-change the command itself guards that resume: checkpoints written with other
# settings or other data are deleted and training starts afresh. The params hold every setting, so
# a changed one reruns the job. With resources.gpu > 1 one torchrun starts one process per GPU.
# With `nodes: N > 1` in the profile's set-resources, the job spans N nodes: srun starts one torchrun
# per node, each inside the image (myjepa/cluster/launch.py), so Snakemake's own container is off.
# The batch is drawn whole and split by rank, so the weights do not depend on nodes or GPUs.


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        encoder="results/pretrain/{run}/s{seed}/encoder.pt",
    log:
        "logs/pretrain/{run}-s{seed}.log",
    benchmark:
        "logs/benchmarks/pretrain/{run}-s{seed}.tsv"
    container:
        pretrain_container()
    threads: res("pretrain", "threads")
    resources:
        mem_mb=res("pretrain", "mem_mb"),
        runtime=res("pretrain", "runtime"),
        gpu=res("pretrain", "gpu"),
    params:
        settings=pretrain_settings,
        args=pretrain_args,
        dir=lambda w, output: os.path.dirname(output.encoder),
        launch=pretrain_launch,
    shell:
        """
        {params.launch} {params.args} --out {params.dir} --seed {wildcards.seed} --restart-on-change ${{MYJEPA_WANDB:-}} 2>&1 | tee {log}
        """

# Aggregation of every finetune result into CSV tables, and the self-contained HTML report.


rule aggregate:
    input:
        results=all_finetunes("results"),
    output:
        auc=report(
            "results/auc.csv",
            caption="../report/auc.rst",
            category="AUC",
            labels={"table": "test AUC per job"},
        ),
        summary=report(
            "results/auc_summary.csv",
            caption="../report/auc_summary.rst",
            category="AUC",
            labels={"table": "mean and std over seeds"},
        ),
        per_class=report(
            "results/auc_per_class.csv",
            caption="../report/per_class.rst",
            category="AUC",
            labels={"table": "per-class test AUC"},
        ),
    log:
        "logs/aggregate.log",
    benchmark:
        "logs/benchmarks/aggregate.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    params:
        encoders=lambda w: shlex.quote(
            json.dumps(wf.encoder_table(RUNS, PRETRAINED, BASELINES), sort_keys=True)
        ),
    shell:
        "myjepa report aggregate --encoders {params.encoders} --out {output.auc}"
        " --summary {output.summary} --per-class {output.per_class} {input.results}"
        " 2>&1 | tee {log}"


rule report:
    input:
        auc=rules.aggregate.output.auc,
        summary=rules.aggregate.output.summary,
        per_class=rules.aggregate.output.per_class,
        predictions=all_finetunes("predictions"),
        encoders=all_encoders(),
        releases=all_releases(),
        classifiers=all_classifiers(),
        dumps=pretrain_dump_stats(),
    output:
        html=report(
            "results/report.html",
            caption="../report/report.rst",
            category="Report",
            labels={"file": "report.html"},
        ),
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmarks/report.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    params:
        config=lambda w: shlex.quote(json.dumps(config, sort_keys=True)),
        image=config["container"]["image"],
        dumps=lambda w, input: " ".join(wf.dump_of_stats(s) for s in input.dumps),
    shell:
        "myjepa report html --auc {input.auc} --summary {input.summary}"
        " --per-class {input.per_class} --config-json {params.config} --image {params.image}"
        " --pretrain-runs {input.encoders} --dumps {params.dumps} --releases {input.releases}"
        " --classifiers {input.classifiers}"
        " --out {output.html} 2>&1 | tee {log}"

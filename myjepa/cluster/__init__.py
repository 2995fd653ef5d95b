"""Running the workflow on a SLURM cluster: read the cluster, write and check a Snakemake profile."""

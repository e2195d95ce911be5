"""Running a study's jobs on a SLURM cluster (``hydra/launcher=slurm``).

``launcher``: the Hydra launcher (hydra-submitit-launcher's, plus the parts below);
``resources``: what each job asks SLURM for, and whether the cluster can ever give it;
``waiting``: waiting for the jobs without relying on SLURM's accounting (``sacct``).
"""

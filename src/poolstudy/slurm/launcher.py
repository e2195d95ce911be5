"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, fitted to the cluster a user has.

On top of the plugin it

- fills in the resources the user left unset (``resources.derive_request``: GPUs only when
  ``trainer.device`` needs one, CPUs from ``trainer.threads``, the partition's time limit) and
  refuses, before submitting, a request no node can ever satisfy, naming the ``hydra.launcher``
  key (``resources.check_request``);
- turns sbatch's refusals into one message naming the keys concerned;
- waits for the jobs through squeue (``waiting.wait_for_jobs``), so that a job that dies
  without a result fails the launching command with a message instead of hanging where the
  cluster has no accounting (``sacct``);
- in each job, gives torch as many threads as SLURM gave the job CPUs (``trainer.threads``
  overrides it).

Requeueing is submitit's: a job that reaches its time limit or is preempted gets SIGUSR2,
submitit pickles the same call again, runs ``scontrol requeue`` and exits; the requeued job
runs the same Hydra job in the same folder, which resumes from ``checkpoint.pt``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import sys
from pathlib import Path
from typing import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import DictConfig, OmegaConf

from poolstudy.errors import PoolStudyError
from poolstudy.slurm.resources import (GPU_KEYS, ClusterQueryFailed, Partition, Request, check_request,
                                       cpus_of_this_job, derive_request, explain_sbatch_error, query_partition)
from poolstudy.slurm.waiting import Ended, cancel, wait_for_jobs

log = logging.getLogger(__name__)

_JOB_KEYS = ("trainer.device", "trainer.threads")


class JobEndedWithoutResult(CompactHydraException):
    """A SLURM job ended (or can never start) without returning a result. Hydra prints only the message."""


def _stop(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class SlurmLauncher(SubmititSlurmLauncher):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self._partition: Partition | None = None
        self._queried = False
        missing = [p for p in ("sbatch", "srun", "squeue", "scontrol") if shutil.which(p) is None]
        if missing:
            _stop(f"hydra/launcher=slurm submits the jobs to SLURM, but {', '.join(missing)} is not on this "
                  f"machine's PATH: run the command on a SLURM cluster's login node. To run each job as a separate "
                  f"process on this machine use hydra/launcher=submitit_local; to try SLURM on one machine, see "
                  f"docs/scale_out.md.")
        # the common case (no swept trainer.device / trainer.threads) is checked before any sweep starts
        self._checked_request(self._job_settings([[]]))

    # ------------------------------------------------------------ launching side
    def _job_settings(self, job_overrides: Sequence[Sequence[str]]) -> list[tuple[str, int | None]]:
        """(trainer.device, trainer.threads) of each job: the sweep's config with the job's overrides of those keys."""
        assert self.config is not None
        base = {k: OmegaConf.select(self.config, k) for k in _JOB_KEYS}
        parser = OverridesParser.create()
        settings = []
        for overrides in job_overrides:
            values = dict(base)
            wanted = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] in _JOB_KEYS]
            for override in parser.parse_overrides(wanted):
                if not override.is_delete():
                    values[override.key_or_group] = override.value()
            threads = values["trainer.threads"]
            settings.append((str(values["trainer.device"]), threads if isinstance(threads, int) else None))
        return settings

    def _cluster_partition(self) -> Partition | None:
        if not self._queried:
            self._queried = True
            try:
                self._partition = query_partition(self.params.get("partition") or None)
            except ClusterQueryFailed as exc:
                log.warning("Could not read the SLURM partition's limits (%s); sbatch will check the request.", exc)
            except PoolStudyError as exc:
                _stop(str(exc))
        return self._partition

    def _checked_request(self, settings: list[tuple[str, int | None]]) -> Request:
        partition = self._cluster_partition()
        request = derive_request(self.params, settings, partition)
        if partition is not None:
            try:
                check_request(request, partition)
            except PoolStudyError as exc:
                _stop(str(exc))
        return request

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        settings = self._job_settings(job_overrides)
        request = self._checked_request(settings)
        for key, origin in request.origin.items():
            log.info("SLURM jobs get %s=%s (from %s)", key, request.params[key], origin)
        partition = self._cluster_partition()
        if partition and any(n.gpus for n in partition.nodes) and not any(request.params.get(k) for k in GPU_KEYS):
            log.warning("The SLURM jobs ask for no GPU (trainer.device=%s) although partition %s has GPUs: they train "
                        "on the CPU. Set trainer.device=cuda or hydra.launcher.gpus_per_node=1 for one GPU per job.",
                        _devices(settings), partition.name)
        if any(o.startswith(("hpo.storage=sqlite", "hpo.storage='sqlite")) for job in job_overrides for o in job):
            log.warning("The HPO trials report to an SQLite file from the compute nodes; SQLite on a network file "
                        "system can lock up or lose writes. Use hydra.sweeper.storage=journal:<shared file> or a "
                        "PostgreSQL URL with hydra/launcher=slurm.")
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(cluster="slurm", folder=request.params["submitit_folder"],
                                         slurm_max_num_timeout=request.params["max_num_timeout"])
        base_keys = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name",
                     "stderr_to_stdout"}
        executor.update_parameters(**{k if k in base_keys else f"slurm_{k}": v
                                      for k, v in request.params.items() if k not in init_keys and v is not None})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = self._submit(executor, job_params, request)
        try:
            ended = wait_for_jobs(jobs)
        except KeyboardInterrupt:
            ids = sorted({j.job_id.split("_")[0] for j in jobs})
            log.warning("Stopped waiting; the SLURM jobs keep running (scancel %s stops them). Re-running the same "
                        "command with hydra.sweep.dir=%s skips the jobs that finish meanwhile.", " ".join(ids),
                        sweep_dir)
            raise
        never = [e.job_id for e in ended.values() if e.never_started]
        cancel(never)
        returns = []
        others = (f" {len(ended)} of the {len(jobs)} jobs of this launch ended so: {', '.join(sorted(ended))}."
                  if len(ended) > 1 else "")
        for job, (overrides, _, idx, _, _) in zip(jobs, job_params):
            if job.job_id in ended:
                returns.append(self._failed(job, ended[job.job_id], overrides, idx, others))
                continue
            try:
                returns.append(job.results()[0])
            except Exception as exc:  # the job's own Python failed outside the task (unpickling, submitit)
                returns.append(JobReturn(overrides=overrides, status=JobStatus.FAILED,
                                         _return_value=JobEndedWithoutResult(
                                             f"SLURM job {job.job_id} (job #{idx}) failed: "
                                             f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}; "
                                             f"its log: {job.paths.stderr}")))
        return returns

    def _submit(self, executor, job_params: list, request: Request) -> list:
        folder = Path(str(request.params["submitit_folder"]).split("%j")[0])
        before = set(folder.rglob("*")) if folder.is_dir() else set()
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):  # submitit echoes sbatch's error; we explain it once
                return executor.map_array(self, *zip(*job_params))
        except Exception as exc:  # submitit.core.utils.FailedJobError: sbatch refused the submission
            from submitit.core.utils import FailedJobError

            if not isinstance(exc, FailedJobError):
                raise
            for path in sorted(set(folder.rglob("*")) - before, reverse=True):  # the refused submission's files
                path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            _stop(explain_sbatch_error(str(exc) or captured.getvalue(), request))
            raise  # not reached

    def _failed(self, job, ended: Ended, overrides: list[str], idx: int, others: str) -> JobReturn:
        assert self.config is not None
        what = " ".join(filter_overrides(overrides)) or "no overrides"
        job_dir = _job_dir(self.config, overrides, idx)
        if ended.never_started:
            message = (f"SLURM job {ended.job_id} (job #{idx}: {what}) can never start: it is pending with reason "
                       f"{ended.reason}, a request beyond what the partition allows; it was cancelled. Lower the "
                       f"hydra.launcher keys (cpus_per_task, mem_gb, gpus_per_node, nodes, timeout_min) or choose "
                       f"another hydra.launcher.partition.")
        else:
            reason = "" if ended.reason in ("None", "") else f", reason {ended.reason}"
            message = (f"SLURM job {ended.job_id} (job #{idx}: {what}) ended without a result (state "
                       f"{ended.state}{reason}).{_log_tail(job)} Re-running the same command with "
                       f"hydra.sweep.dir={self.config.hydra.sweep.dir} runs it again in {job_dir} (from its last "
                       f"epoch checkpoint, if it wrote one) and skips the finished jobs.")
        return JobReturn(overrides=overrides, status=JobStatus.FAILED,
                         _return_value=JobEndedWithoutResult(message + others))

    # ------------------------------------------------------------ job side
    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: dict) -> JobReturn:
        cpus = cpus_of_this_job()
        if cpus:  # torch would otherwise start a thread per core of the node (trainer.threads still wins)
            import torch

            torch.set_num_threads(cpus)
        return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)


def _devices(settings: list[tuple[str, int | None]]) -> str:
    return ",".join(sorted({device for device, _ in settings}))


def _job_dir(config: DictConfig, overrides: list[str], idx: int) -> str:
    """The job's folder as Hydra will name it (hydra.sweep.dir / hydra.sweep.subdir)."""
    subdir = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweep.subdir=")), None)
    if subdir is None:
        raw = OmegaConf.to_container(config.hydra.sweep)["subdir"]
        subdir = str(idx) if raw == "${hydra.job.num}" else str(raw)
    return str(Path(str(config.hydra.sweep.dir)) / subdir)


def _log_tail(job, lines: int = 3) -> str:
    for path in (job.paths.stderr, job.paths.stdout):
        try:
            text = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            continue
        if text:
            return f" Its log {path} ends with: " + " | ".join(ln.strip()[:200] for ln in text[-lines:]) + "."
    return f" It wrote no log ({job.paths.stderr})."

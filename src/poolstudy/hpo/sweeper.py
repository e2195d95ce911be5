"""The fair Optuna sweeper: one study per grid cell, the same search space, budget, sampler
(type and seed), pruner and epoch budget for every cell; resumable; final multi-seed runs.

It extends hydra-optuna-sweeper (its configuration, ``hydra.sweeper.params`` syntax, sampler
configs and launcher handling) with what a fair comparison needs; see README "Fair
hyper-parameter search".
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from poolstudy.errors import PoolStudyError
from poolstudy.hpo.budget import (WORKER_ATTR, budget, reclaim_interrupted, register_worker, within_budget,
                                  worker_id)
from poolstudy.hpo.reporting import PRUNER_ATTR
from poolstudy.hpo.space import describe_space, grid_cells, search_space
from poolstudy.hpo.storage import mask_password, open_storage, refuse_written_password, url_for_jobs
from poolstudy.hpo.summary import study_summary, write_hpo_summary
from poolstudy.training.run import finished_metrics
from poolstudy.utils.io import atomic_write_json

log = logging.getLogger(__name__)

SETTINGS_ATTR = "poolstudy_settings"
# grid keys already spelled out in the study name
_NAMED_KEYS = {"model", "dataset", "arch", "model.name", "model.depth"}


def _quote(value: Any) -> str:
    text = str(value)
    return text if re.fullmatch(r"[\w.\-+/]+", text) else "'" + text.replace("'", "\\'") + "'"


class FairOptunaSweeper(OptunaSweeperImpl):
    def __init__(self, sampler: Any, direction: Any, storage: str, study_prefix: str, n_trials: int, n_jobs: int,
                 params: DictConfig | None, pruner: Any, max_failure_fraction: float, final_seeds: int,
                 extend: bool) -> None:
        super().__init__(sampler, direction, storage, None, n_trials, n_jobs, 0.0, None, None, params)
        self.study_prefix = study_prefix or ""
        self.pruner = pruner
        self.max_failure_fraction = max_failure_fraction
        self.final_seeds = final_seeds
        self.extend = extend
        self._pristine_sampler = copy.deepcopy(sampler)  # every study starts from the same sampler state

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        sweeper_cfg = config.hydra.sweeper
        self.sampler_cfg = OmegaConf.to_container(sweeper_cfg.sampler, resolve=True)
        self.pruner_cfg = OmegaConf.to_container(sweeper_cfg.pruner, resolve=True)
        self.storage_as_written = OmegaConf.to_container(sweeper_cfg, resolve=False).get("storage")

    # ------------------------------------------------------------------ sweep
    def sweep(self, arguments: list[str]) -> None:
        try:
            self._sweep(arguments)
        except PoolStudyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    def _sweep(self, arguments: list[str]) -> None:
        checks = {"hydra.sweeper.n_trials": self.n_trials >= 1, "hydra.sweeper.n_jobs": self.n_jobs >= 1,
                  "hydra.sweeper.final_seeds": self.final_seeds >= 0,
                  "hydra.sweeper.max_failure_fraction": 0 <= self.max_failure_fraction <= 1}
        for key, ok in checks.items():
            if not ok:
                raise PoolStudyError(f"{key} = {OmegaConf.select(self.config, key)} is not valid: n_trials and "
                                     f"n_jobs must be >= 1, final_seeds >= 0, max_failure_fraction in [0, 1].")
        space, fixed = search_space(self.params)
        if not space:
            raise PoolStudyError("hydra.sweeper.params defines no search dimension; add e.g. "
                                 "hydra.sweeper.params.optimizer.lr='tag(log, interval(1e-4, 1e-2))'.")
        refuse_written_password(str(self.storage_as_written))
        storage_url = str(self.storage)
        storage = open_storage(storage_url)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        cells, self.swept_keys = grid_cells(arguments)
        log.info("Fair HPO: %d cell(s) x %d trials, storage %s, sweep dir %s", len(cells), self.n_trials,
                 mask_password(storage_url), sweep_dir)
        for cell in cells:
            self._run_cell(cell, fixed, space, storage, storage_url, sweep_dir)
        write_hpo_summary(sweep_dir)
        log.info("Summary: %s", sweep_dir / "hpo_summary.md")

    def _study_name(self, cell: list[str], cfg: DictConfig) -> str:
        # the network (arch=torchvision model.name=..., arch=resnet model.depth=...) where the arch has one
        network = [cfg.model[key] for key in ("name", "depth") if cfg.model.get(key) is not None]
        parts = [cfg.model.arch, *network, cfg.model.downsample.type, cfg.dataset.name]
        for override in cell:
            key, _, value = override.partition("=")
            if key in self.swept_keys and key.lstrip("+~") not in _NAMED_KEYS:
                parts.append(f"{key.rsplit('.', 1)[-1]}{value}")
        return self.study_prefix + re.sub(r"[^\w.\-+]", "_", "-".join(map(str, parts)))

    def _open_study(self, name: str, storage, settings: dict[str, Any]) -> optuna.Study:
        sampler = copy.deepcopy(self._pristine_sampler)
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    direction=self._get_directions()[0], load_if_exists=True)
        stored = study.user_attrs.get(SETTINGS_ATTR)
        if stored is None:
            study.set_user_attr(SETTINGS_ATTR, settings)
            study.set_user_attr(PRUNER_ATTR, self.pruner_cfg)
            return study
        different = sorted(k for k in settings if k != "n_trials" and stored.get(k) != settings[k])
        if different:
            raise PoolStudyError(
                f"Study '{name}' already exists in the storage with different settings ({', '.join(different)}); "
                f"resuming it would mix two experiments. Use another hydra.sweeper.study_prefix or "
                f"hydra.sweeper.storage for the new experiment."
            )
        if settings["n_trials"] != stored["n_trials"]:
            if not self.extend or settings["n_trials"] < stored["n_trials"]:
                raise PoolStudyError(
                    f"Study '{name}' was run with n_trials={stored['n_trials']}, now {settings['n_trials']}. "
                    f"To extend it deliberately pass hydra.sweeper.extend=true (budgets can only grow; "
                    f"extend every cell alike to keep the comparison fair)."
                )
            log.info("Extending study %s from %d to %d trials", name, stored["n_trials"], settings["n_trials"])
            study.set_user_attr(SETTINGS_ATTR, settings)
        return study

    def _run_cell(self, cell, fixed, space, storage, storage_url, sweep_dir: Path) -> None:
        overrides = [*fixed, *cell]
        try:
            cell_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        except Exception as exc:  # an unknown group option or key in this cell
            log.error("Cell %s cannot be composed: %s", " ".join(cell), str(exc).splitlines()[0])
            return
        name = self._study_name(cell, cell_cfg)
        settings = {
            "cell": cell, "fixed": fixed, "search_space": describe_space(space), "n_trials": self.n_trials,
            "sampler": self.sampler_cfg.get("_target_"), "sampler_seed": self.sampler_cfg.get("seed"),
            "pruner": self.pruner_cfg, "direction": self._get_directions()[0],
            "epochs": cell_cfg.trainer.epochs, "final_seeds": self.final_seeds,
        }
        study = self._open_study(name, storage, settings)
        reclaim_interrupted(study, storage)
        register_worker(study)
        study_dir = sweep_dir / name
        status = "complete"
        while True:
            counts = budget(study, self.n_trials)
            if counts.failed > self.max_failure_fraction * self.n_trials:
                status = "stopped: too many failures"
                log.error("Study %s stopped: %d of its %d trials failed (more than max_failure_fraction=%s); "
                          "the failed trials' status.json files say why. Other studies go on.",
                          name, counts.failed, self.n_trials, self.max_failure_fraction)
                break
            n_new = min(self.n_jobs, counts.remaining)
            if n_new == 0:
                break
            trials = [study.ask(space) for _ in range(n_new)]
            for trial in trials:
                trial.set_user_attr(WORKER_ATTR, worker_id())
            kept = []
            for trial in trials:
                if within_budget(study, trial.number, self.n_trials):
                    kept.append(trial)
                else:  # another worker took the last slots meanwhile
                    trial.set_user_attr("over_budget", True)
                    study.tell(trial, state=TrialState.FAIL)
            if not kept:
                break
            self._launch_trials(name, kept, overrides, url_for_jobs(storage_url), sweep_dir)
        counts = budget(study, self.n_trials)
        if status == "complete" and counts.running:
            status = "waiting for other workers"
            log.info("Study %s: %d trial(s) still running in other workers; the last worker to finish runs the "
                     "final seeds (or re-run this command).", name, counts.running)
        elif status == "complete" and counts.complete == 0:
            status = "no completed trial"
        if status == "complete":
            self._launch_finals(name, study, overrides, sweep_dir)
        labels = {"arch": cell_cfg.model.arch, "downsample": cell_cfg.model.downsample.type,
                  "dataset": cell_cfg.dataset.name}
        study_summary(study, counts, settings, mask_password(storage_url), status, study_dir, labels)

    def _launch(self, jobs: list[list[str]]) -> list[JobReturn]:
        returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
        self.job_idx += len(returns)
        return list(returns)

    def _launch_trials(self, name, trials, overrides, storage_url, sweep_dir: Path) -> None:
        jobs, dirs = [], []
        for trial in trials:
            subdir = f"{name}/trials/{trial.number}"
            params = [f"{k}={_quote(v)}" for k, v in trial.params.items()]
            jobs.append([*overrides, *params, "hpo.role=trial", f"hpo.study_name={name}",
                         f"hpo.trial={trial.number}", f"hpo.storage={_quote(storage_url)}",
                         f"hydra.sweep.subdir={subdir}"])
            dirs.append(sweep_dir / subdir)
        for trial, ret, job_dir in zip(trials, self._launch(jobs), dirs):
            self._tell(trial, ret, job_dir)

    def _tell(self, trial: optuna.Trial, ret: JobReturn, job_dir: Path) -> None:
        study = trial.study
        value, reason = None, None
        try:
            value = ret.return_value
        except Exception as exc:  # the job raised: ret.return_value re-raises it
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if isinstance(value, (int, float)) and math.isfinite(value):
            study.tell(trial, value)
            return
        status = {}
        if (job_dir / "status.json").is_file():
            status = json.loads((job_dir / "status.json").read_text())
        if status.get("status") == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
            log.info("Trial %d of %s pruned: %s", trial.number, study.study_name, status.get("error", ""))
            return
        reason = status.get("error") or reason or f"objective was {value!r}"
        if not status and job_dir.is_dir():  # the folder must tell what happened too
            atomic_write_json(job_dir / "status.json", {"status": "failed", "error": reason})
        trial.set_user_attr("fail_reason", reason[:500])
        study.tell(trial, state=TrialState.FAIL)
        log.warning("Trial %d of %s failed: %s", trial.number, study.study_name, reason)

    def _launch_finals(self, name, study: optuna.Study, overrides, sweep_dir: Path) -> None:
        if self.final_seeds == 0:
            return
        best = study.best_trial
        params = [f"{k}={_quote(v)}" for k, v in best.params.items()]
        jobs = [[*overrides, *params, f"seed={seed}", "hpo.role=final", f"hpo.study_name={name}",
                 f"hpo.trial={best.number}", f"hydra.sweep.subdir={name}/final/seed{seed}"]
                for seed in range(self.final_seeds)
                if finished_metrics(sweep_dir / name / "final" / f"seed{seed}") is None]
        if not jobs:
            return
        log.info("Study %s: best trial %d (val acc %.4f) %s; training %d final seeds", name, best.number,
                 best.value, best.params, self.final_seeds)
        for start in range(0, len(jobs), self.n_jobs):
            self._launch(jobs[start:start + self.n_jobs])

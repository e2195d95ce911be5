"""The fair Optuna sweeper: one study per grid cell, the same search space, budget, sampler
(type and seed), pruner and epoch budget for every cell; resumable; final multi-seed runs.

It extends hydra-optuna-sweeper (its configuration, ``hydra.sweeper.params`` syntax, sampler
configs and launcher handling) with what a fair comparison needs; see docs/studies.md, "Fair
hyper-parameter search".

Order of work: everything that can be checked without a storage (settings, search space, grid,
each cell composed with the search space's probes) is checked first; then existing studies are
compared with this command's settings and their folders; only then is the storage created and
are trials launched. A mistake therefore writes nothing.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra.types import RunMode
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from poolstudy.errors import PoolStudyError
from poolstudy.hpo.budget import (WORKER_ATTR, budget, mark_interrupted, reclaim_interrupted, register_worker,
                                  within_budget, worker_id)
from poolstudy.hpo.checks import CellPlan, check_cells, check_key_conflicts, override_value
from poolstudy.hpo.finals import best_trial, final_results, set_aside_stale_finals
from poolstudy.hpo.reporting import PRUNER_ATTR
from poolstudy.hpo.sampling import SEED_ATTR, TrialSeededSampler, draw_seed, grid_size, sampler_factory
from poolstudy.hpo.space import describe_space, grid_cells, search_space, with_config_grid
from poolstudy.hpo.storage import (damaged_storage_message, is_damage, mask_password, open_storage,
                                   refuse_written_password, sqlite_path, study_names, url_for_jobs)
from poolstudy.hpo.suggest import command_with, params_override
from poolstudy.hpo.study_summary import study_summary, write_hpo_summary
from poolstudy.jobfolder import (HPO_SUMMARY_MD, METRICS_FILE, finished_metrics, read_record, read_status,
                                 write_status)
from poolstudy.jobs.sweep import BASIC_SWEEPER
from poolstudy.tracking.optuna_labels import cell_labels, label_trial, name_objective

log = logging.getLogger(__name__)

SETTINGS_ATTR = "poolstudy_settings"
# grid keys already spelled out in the study name
_NAMED_KEYS = {"model", "dataset", "arch", "model.name", "model.depth"}
# study statuses after which the sweep exits with status 1
FAILED_STATUSES = ("stopped: too many failures", "no completed trial", "final runs failed")
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class SweepInterrupted(Exception):
    """Ctrl-C (or a job's SystemExit(130)) during the sweep; the message says where and how to resume."""


@dataclass
class Cell:
    plan: CellPlan
    name: str
    settings: dict[str, Any]


class FairOptunaSweeperImpl(OptunaSweeperImpl):
    """The logic behind ``hydra/sweeper=poolstudy_optuna`` (the Hydra plugin class
    ``hydra_plugins.poolstudy_sweeper.sweeper.FairOptunaSweeper`` holds one), as hydra-optuna-sweeper's
    ``OptunaSweeper`` holds an ``OptunaSweeperImpl``."""

    def __init__(self, sampler: Any, direction: Any, storage: str, study_prefix: str, n_trials: int, n_jobs: int,
                 params: DictConfig | None, pruner: Any, max_failure_fraction: float, final_seeds: int,
                 extend: bool, grid: DictConfig | None = None) -> None:
        super().__init__(sampler, direction, storage, None, n_trials, n_jobs, 0.0, None, None, params)
        self.study_prefix = study_prefix or ""
        self.pruner = pruner
        self.max_failure_fraction = max_failure_fraction
        self.final_seeds = final_seeds
        self.extend = extend
        self.grid = OmegaConf.to_container(grid, resolve=False) if isinstance(grid, DictConfig) else dict(grid or {})
        self._where = "before the first trial"

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        sweeper_cfg = config.hydra.sweeper
        self.sampler_cfg = OmegaConf.to_container(sweeper_cfg.sampler, resolve=True)
        self.pruner_cfg = OmegaConf.to_container(sweeper_cfg.pruner, resolve=True)
        self.storage_as_written = OmegaConf.to_container(sweeper_cfg, resolve=False).get("storage")
        # the seed of the studies this command creates: the configured one, else one drawn for all of them
        # (every cell's study starts from the same sampler state either way)
        configured = self.sampler_cfg.get("seed")
        self.new_study_seed = int(configured) if configured is not None else draw_seed()

    # ------------------------------------------------------------------ sweep
    def sweep(self, arguments: list[str]) -> None:
        try:
            statuses = self._sweep(arguments)
        except PoolStudyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except SweepInterrupted as exc:
            print(f"interrupted: {exc}", file=sys.stderr)
            sys.exit(INTERRUPTED_EXIT)
        except KeyboardInterrupt:
            print(f"interrupted {self._where}; nothing is lost. Re-run the same command to resume: {command_with()}",
                  file=sys.stderr)
            sys.exit(INTERRUPTED_EXIT)
        failed = {name: status for name, status in statuses.items() if status.startswith(FAILED_STATUSES)}
        if failed:
            print(f"error: {len(failed)} of {len(statuses)} studies did not finish: "
                  + "; ".join(f"{name}: {status}" for name, status in failed.items())
                  + (". The other studies are complete" if len(failed) < len(statuses) else "")
                  + f"; {Path(self.config.hydra.sweep.dir) / 'hpo_summary.md'} lists them all, and the failed jobs' "
                  f"status.json files say why.", file=sys.stderr)
            sys.exit(1)

    def _sweep(self, arguments: list[str]) -> dict[str, str]:
        checks = {"hydra.sweeper.n_trials": self.n_trials >= 1, "hydra.sweeper.n_jobs": self.n_jobs >= 1,
                  "hydra.sweeper.final_seeds": self.final_seeds >= 0,
                  "hydra.sweeper.max_failure_fraction": 0 <= self.max_failure_fraction <= 1}
        for key, ok in checks.items():
            if not ok:
                raise PoolStudyError(f"{key} = {OmegaConf.select(self.config, key)} is not valid: n_trials and "
                                     f"n_jobs must be >= 1, final_seeds >= 0, max_failure_fraction in [0, 1].")
        raw = OmegaConf.to_container(self.params, resolve=False) if self.params is not None else {}
        space, fixed = search_space(raw)
        if not space:
            example = params_override({"optimizer.lr": "tag(log, interval(1e-4, 1e-2))"})
            raise PoolStudyError(f"hydra.sweeper.params defines no search dimension; add one, e.g. "
                                 f"{command_with(add=[example])}")
        refuse_written_password(str(self.storage_as_written))
        arguments = with_config_grid(self.grid, arguments)
        cells, self.swept_keys = grid_cells(arguments)
        study_file = self._study_file()
        check_key_conflicts(space, fixed, arguments, self.swept_keys, raw, study_file)
        plans = check_cells(self._compose, cells, fixed, self.swept_keys, space, raw, study_file, arguments)
        factory = sampler_factory(self.sampler_cfg, space)
        try:
            sampler = factory(0)
        except PoolStudyError:
            raise
        except Exception as exc:  # a sampler config Optuna refuses
            raise PoolStudyError(f"hydra.sweeper.sampler = {self.sampler_cfg} cannot be built: "
                                 f"{str(exc).splitlines()[0]}") from None
        if isinstance(sampler, optuna.samplers.GridSampler) and self.n_trials > grid_size(space):
            raise PoolStudyError(
                f"hydra.sweeper.n_trials = {self.n_trials} exceeds the {grid_size(space)} points of the grid sampler's "
                f"grid; the extra trials would repeat points and count twice. Use "
                f"hydra.sweeper.n_trials={grid_size(space)}.")
        planned = self._name_cells(plans, fixed, space)

        storage_url = str(self.storage)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        self._check_existing(planned, storage_url, sweep_dir)
        storage = open_storage(storage_url)
        log.info("Fair HPO: %d cell(s) x %d trials, storage %s, sweep dir %s; search space %s", len(planned),
                 self.n_trials, mask_password(storage_url), sweep_dir,
                 ", ".join(f"{k}: {raw[k]}" for k in space))
        statuses = {}
        try:
            for cell in planned:
                statuses[cell.name] = self._run_cell(cell, fixed, space, factory, storage, storage_url, sweep_dir)
        except Exception as exc:  # Optuna reports a damaged SQLite file as a failed commit
            path = sqlite_path(storage_url)
            if path is not None and not isinstance(exc, PoolStudyError) and is_damage(exc):
                raise PoolStudyError(damaged_storage_message(path, str(exc).splitlines()[0])) from None
            raise
        write_hpo_summary(sweep_dir)
        log.info("Summary: %s", sweep_dir / HPO_SUMMARY_MD)
        return statuses

    def _compose(self, overrides: list[str]) -> DictConfig:
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def _study_file(self) -> tuple[str, dict[str, str]] | None:
        """(name, grid params) of an ``experiment=`` study made for the basic sweeper (its grid in
        ``hydra.sweeper.params``), else None. A study made for this sweeper keeps its grid in
        ``hydra.sweeper.grid`` and its recipe in its own defaults."""
        choice = OmegaConf.select(self.config, "hydra.runtime.choices.experiment")
        if not choice:
            return None
        cfg = self.hydra_context.config_loader.load_configuration(
            config_name=self.config.hydra.job.config_name, overrides=[f"experiment={choice}"],
            run_mode=RunMode.MULTIRUN)
        if cfg.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return None
        params = OmegaConf.to_container(cfg.hydra.sweeper.get("params") or {}, resolve=False)
        return str(choice), {str(k): str(v) for k, v in params.items()}

    def _study_name(self, cell: list[str], cfg: DictConfig) -> str:
        # the network (arch=torchvision model.name=..., arch=resnet model.depth=...) where the arch has one
        network = [cfg.model[key] for key in ("name", "depth") if cfg.model.get(key) is not None]
        parts = [cfg.model.arch, *network, cfg.model.downsample.type, cfg.dataset.name]
        for override in cell:
            key, _, value = override.partition("=")
            if key in self.swept_keys and key.lstrip("+~") not in _NAMED_KEYS:
                parts.append(f"{key.rsplit('.', 1)[-1]}{value}")
        return self.study_prefix + re.sub(r"[^\w.\-+]", "_", "-".join(map(str, parts)))

    def _name_cells(self, plans: list[CellPlan], fixed: list[str], space) -> list[Cell]:
        cells, seen = [], {}
        for plan in plans:
            name = self._study_name(plan.cell, plan.cfg)
            if name in seen:
                raise PoolStudyError(
                    f"{seen[name].capitalize()} and {plan.label} would both be the study "
                    f"'{name}' (a value listed twice, or two values naming the same variant); one study would "
                    f"count as two. Give each value once.")
            seen[name] = plan.label
            settings = {
                "cell": plan.cell, "fixed": fixed, "search_space": describe_space(space), "n_trials": self.n_trials,
                "sampler": self.sampler_cfg.get("_target_"), "sampler_seed": self.sampler_cfg.get("seed"),
                "pruner": self.pruner_cfg, "direction": self._get_directions()[0],
                "epochs": plan.cfg.trainer.epochs, "final_seeds": self.final_seeds,
            }
            cells.append(Cell(plan, name, settings))
        return cells

    # ------------------------------------------------------- existing studies
    def _check_existing(self, cells: list[Cell], storage_url: str, sweep_dir: Path) -> None:
        """Compare this command with the studies already in the storage and the folders already on disk."""
        names = study_names(storage_url)
        storage = open_storage(storage_url) if names else None
        for cell in cells:
            trial_dirs = {p.name for p in (sweep_dir / cell.name / "trials").glob("*") if p.is_dir()}
            if names is None or cell.name not in names:
                if trial_dirs:
                    raise PoolStudyError(
                        f"{sweep_dir / cell.name} holds trial folders of a study '{cell.name}' that the storage "
                        f"{mask_password(storage_url)} does not contain (was the storage moved, replaced or "
                        f"deleted?). A new study would number its trials from 0 again into those folders. Restore "
                        f"the storage, or start in another folder: {command_with(add=[self._other_sweep_dir()])}")
                continue
            study_id = storage.get_study_id_from_name(cell.name)
            stored = storage.get_study_user_attrs(study_id).get(SETTINGS_ATTR)
            if stored is not None:
                self._compare_settings(cell, stored)
            known = {str(t.number) for t in storage.get_all_trials(study_id, deepcopy=False)}
            foreign = sorted(trial_dirs - known, key=lambda n: (len(n), n))
            if foreign:
                raise PoolStudyError(
                    f"{sweep_dir / cell.name / 'trials'} holds folders ({', '.join(foreign[:5])}) for trials that the "
                    f"study '{cell.name}' in {mask_password(storage_url)} never had (was the storage replaced by "
                    f"another one?). Restore the storage, or start in another folder: "
                    f"{command_with(add=[self._other_sweep_dir()])}")

    def _other_sweep_dir(self) -> str:
        return f"hydra.sweep.dir={self.config.hydra.sweep.dir}-2"

    def _compare_settings(self, cell: Cell, stored: dict[str, Any]) -> None:
        settings, name = cell.settings, cell.name
        different = sorted(k for k in settings if k != "n_trials" and stored.get(k) != settings[k])
        if different:
            raise PoolStudyError(
                f"Study '{name}' already exists in the storage with different settings ({', '.join(different)}); "
                f"resuming it would mix two experiments. Use another hydra.sweeper.study_prefix or "
                f"hydra.sweeper.storage for the new experiment."
            )
        if settings["n_trials"] != stored["n_trials"] and (not self.extend or settings["n_trials"] < stored["n_trials"]):
            raise PoolStudyError(
                f"Study '{name}' was run with n_trials={stored['n_trials']}, now {settings['n_trials']}. "
                f"To extend it deliberately pass hydra.sweeper.extend=true (budgets can only grow; "
                f"extend every cell alike to keep the comparison fair)."
            )

    def _open_study(self, cell: Cell, storage, factory) -> optuna.Study:
        name, settings = cell.name, cell.settings
        names = {s.study_name for s in storage.get_all_studies()}
        if name not in names:
            seed = self.new_study_seed
            study = optuna.create_study(study_name=name, storage=storage, direction=self._get_directions()[0],
                                        sampler=TrialSeededSampler(factory, seed), load_if_exists=True)
            if study.user_attrs.get(SETTINGS_ATTR) is None:
                study.set_user_attr(SEED_ATTR, seed)
                study.set_user_attr(SETTINGS_ATTR, settings)
                study.set_user_attr(PRUNER_ATTR, self.pruner_cfg)
                return study
        study_id = storage.get_study_id_from_name(name)
        attrs = storage.get_study_user_attrs(study_id)
        # studies made before the sampler seed was stored used the configured seed
        seed = attrs.get(SEED_ATTR, self.new_study_seed)
        study = optuna.load_study(study_name=name, storage=storage, sampler=TrialSeededSampler(factory, seed))
        stored = attrs.get(SETTINGS_ATTR)
        if stored is None:  # created by another worker a moment ago, not yet labelled
            study.set_user_attr(SEED_ATTR, seed)
            study.set_user_attr(SETTINGS_ATTR, settings)
            study.set_user_attr(PRUNER_ATTR, self.pruner_cfg)
            return study
        self._compare_settings(cell, stored)
        if settings["n_trials"] != stored["n_trials"]:
            log.info("Extending study %s from %d to %d trials", name, stored["n_trials"], settings["n_trials"])
            study.set_user_attr(SETTINGS_ATTR, settings)
        if SEED_ATTR not in attrs:
            study.set_user_attr(SEED_ATTR, seed)
        return study

    # ------------------------------------------------------------------ cells
    def _run_cell(self, cell: Cell, fixed, space, factory, storage, storage_url, sweep_dir: Path) -> str:
        name, settings = cell.name, cell.settings
        overrides = [*fixed, *cell.plan.cell]
        study = self._open_study(cell, storage, factory)
        name_objective(study)  # for optuna-dashboard (poolstudy.tracking.optuna_labels)
        study_dir = sweep_dir / name
        reclaim_interrupted(study, storage, study_dir / "trials")
        register_worker(study)
        status = "complete"
        self._where = f"in study {name} between trials"
        try:
            while True:
                counts = budget(study, self.n_trials)
                if counts.failed > self.max_failure_fraction * self.n_trials:
                    status = (f"stopped: too many failures ({counts.failed} of {self.n_trials} trials failed, more "
                              f"than max_failure_fraction={self.max_failure_fraction})")
                    log.error("Study %s %s; the failed trials' status.json files say why. Other studies go on.",
                              name, status)
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
                self._launch_trials(name, kept, overrides, url_for_jobs(storage_url), sweep_dir, cell)
                self._where = f"in study {name} between trials"
            counts = budget(study, self.n_trials)
            best = best_trial(study)
            if best is not None:  # final/ holds the current best trial's runs only
                set_aside_stale_finals(study_dir, best.number)
            if status == "complete" and counts.running:
                status = "waiting for other workers"
                log.info("Study %s: %d trial(s) still running in other workers; the last worker to finish runs "
                         "the final seeds (or re-run this command).", name, counts.running)
            elif status == "complete" and best is None:
                status = "no completed trial"
            if status == "complete":
                status = self._launch_finals(name, study, best, overrides, study_dir)
        except BaseException as exc:
            self._on_interrupt(study, storage, study_dir, exc)
            raise
        study_summary(study, counts, {**settings, "sampler_seed": study.user_attrs.get(SEED_ATTR)},
                      mask_password(storage_url), status, study_dir, cell.plan.identity)
        return status

    def _on_interrupt(self, study: optuna.Study, storage, study_dir: Path, exc: BaseException) -> None:
        """Mark this process's running trials failed+interrupted at once (they do not count and are redone),
        then turn Ctrl-C into SweepInterrupted."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the bookkeeping
        try:
            why = "Ctrl-C" if _is_interrupt(exc) else f"{type(exc).__name__}: {str(exc)[:200]}"
            numbers = mark_interrupted(study, storage, why, study_dir / "trials")
        finally:
            signal.signal(signal.SIGINT, previous)
        if not _is_interrupt(exc):
            return
        marked = (f"trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))} marked failed "
                  f"(interrupted): not counted, redone with the same parameters on resume. " if numbers else "")
        raise SweepInterrupted(f"stopped {self._where}; {marked}Finished trials and final runs are kept. "
                               f"Re-run the same command to resume: {command_with()}") from None

    def _launch(self, jobs: list[list[str]]) -> list[JobReturn]:
        returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
        self.job_idx += len(returns)
        return list(returns)

    def _launch_trials(self, name, trials, overrides, storage_url, sweep_dir: Path, cell: Cell) -> None:
        jobs, dirs = [], []
        for trial in trials:
            subdir = f"{name}/trials/{trial.number}"
            params = [override_value(k, v) for k, v in trial.params.items()]
            jobs.append([*overrides, *params, "hpo.role=trial", f"hpo.study_name={name}",
                         f"hpo.trial={trial.number}", override_value("hpo.storage", storage_url),
                         f"hydra.sweep.subdir={subdir}"])
            dirs.append(sweep_dir / subdir)
            # for optuna-dashboard: the trial's folder, cell and role (poolstudy.tracking.optuna_labels)
            label_trial(trial, dirs[-1], cell_labels(cell.plan.identity, cell.plan.cell, self.swept_keys))
        numbers = ", ".join(str(t.number) for t in trials)
        self._where = f"during trial{'s' if len(trials) > 1 else ''} {numbers} of study {name} ({dirs[0]})"
        for trial, ret, job_dir in zip(trials, self._launch(jobs), dirs):
            self._tell(trial, ret, job_dir, cell.plan.identity)

    def _tell(self, trial: optuna.Trial, ret: JobReturn, job_dir: Path, labels: dict[str, Any]) -> None:
        study = trial.study
        value, reason = None, None
        try:
            value = ret.return_value
        except Exception as exc:  # the job raised: ret.return_value re-raises it
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if isinstance(value, (int, float)) and math.isfinite(value):
            mismatch = trained_other_cell(job_dir, labels)
            if mismatch is None:
                study.tell(trial, value)
                return
            reason = mismatch
        status = read_status(job_dir) or {}
        if status.get("status") == "pruned" and reason is None:
            study.tell(trial, state=TrialState.PRUNED)
            log.info("Trial %d of %s pruned: %s", trial.number, study.study_name, status.get("error", ""))
            return
        reason = reason or status.get("error") or f"objective was {value!r}"
        if not status and job_dir.is_dir():  # the folder must tell what happened too
            write_status(job_dir, {"status": "failed", "error": reason})
        trial.set_user_attr("fail_reason", reason[:500])
        study.tell(trial, state=TrialState.FAIL)
        log.warning("Trial %d of %s failed: %s", trial.number, study.study_name, reason)

    def _launch_finals(self, name, study: optuna.Study, best, overrides, study_dir: Path) -> str:
        """Train the best trial's final runs that are missing; returns the study's status."""
        if self.final_seeds == 0:
            return "complete"
        params = [override_value(k, v) for k, v in best.params.items()]
        jobs = [[*overrides, *params, f"seed={seed}", "hpo.role=final", f"hpo.study_name={name}",
                 f"hpo.trial={best.number}", f"hydra.sweep.subdir={name}/final/seed{seed}"]
                for seed in range(self.final_seeds)
                if finished_metrics(study_dir / "final" / f"seed{seed}") is None]
        if jobs:
            log.info("Study %s: best trial %d (val acc %.4f) %s; training %d final seeds", name, best.number,
                     best.value, best.params, len(jobs))
            for start in range(0, len(jobs), self.n_jobs):
                batch = jobs[start:start + self.n_jobs]
                self._where = (f"during the final runs of study {name} (trial {best.number}, "
                               f"{study_dir / 'final'})")
                self._launch(batch)
        done = {f["seed"] for f in final_results(study_dir, best.number)}
        missing = [s for s in range(self.final_seeds) if s not in done]
        if missing:
            log.error("Study %s: final runs of seeds %s did not finish; their status.json files say why.", name,
                      ", ".join(map(str, missing)))
            return f"final runs failed (seeds {', '.join(map(str, missing))} of trial {best.number})"
        return "complete"


def _is_interrupt(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and exc.code == INTERRUPTED_EXIT)


def trained_other_cell(job_dir: Path, labels: dict[str, Any]) -> str | None:
    """Why a finished trial's metrics.json does not belong to its study's cell, or None when it does."""
    metrics = read_record(job_dir / METRICS_FILE)
    if metrics is None:  # jobs that write no metrics.json (a custom task) are not checked
        return None
    trained = {"arch": (metrics.get("model") or {}).get("arch"),
               "downsample": ((metrics.get("model") or {}).get("downsample") or {}).get("type"),
               "dataset": (metrics.get("dataset") or {}).get("name")}
    differ = {k: v for k, v in trained.items() if v != labels.get(k)}
    if not differ:
        return None
    return ("the job trained " + ", ".join(f"{k} {v}" for k, v in differ.items()) + ", not the study's "
            + ", ".join(f"{k} {labels.get(k)}" for k in differ))

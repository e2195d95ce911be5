"""Train and evaluate one configuration; with -m, a Hydra multirun over many.

    python train.py                                   # seed max-pool LeNet on MNIST
    python train.py -m model=maxpool,strided dataset=mnist,cifar10
    python train.py -m model=maxpool,strided --cfg job   # the config of each job, nothing run
    python train.py -m experiment=seed_replication       # a ready-made study (conf/experiment/)
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from poolstudy.jobs.shell import run_job
from poolstudy.jobs import cmdline, multirun
from poolstudy.jobs.interrupt import JobInterrupted, exit_code, handle_sigterm


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.argv, notes = cmdline.current_forms(sys.argv)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if cmdline.wants_jobs_shown(sys.argv):  # -m ... --cfg job: every job's config, nothing run
        sys.exit(cmdline.show_jobs(sys.argv, here, "config"))
    misplaced = cmdline.search_space_without_hpo(sys.argv, here, "config")
    if misplaced:
        print(f"error: {misplaced}", file=sys.stderr)
        sys.exit(2)
    handle_sigterm()  # SIGTERM stops a job like Ctrl-C: status.json, checkpoint intact, one line
    try:
        main()
    except KeyboardInterrupt as exc:  # a job has printed where it stopped; elsewhere say it here
        if not isinstance(exc, JobInterrupted):
            running = multirun.current()
            print("interrupted" + (f". Resume the multirun with: {running.resume}" if running else ""),
                  file=sys.stderr)
        sys.exit(exit_code(exc))
    finally:  # a multirun that did not reach its end leaves no outcome ledger behind
        running = multirun.current()
        if running is not None:
            multirun.finish(running)

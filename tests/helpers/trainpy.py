"""``python train.py ARGS`` for the tests, without paying torch's and Hydra's start-up each time.

A real ``python train.py`` spends seconds importing torch, torchvision, Hydra and the project and scanning
Hydra's plugins before it reads its first argument; the suite runs train.py well over a hundred times,
mostly to see it stop with a message. :func:`run` starts each command as a fork of one server process
that imported all of that once (the standard library's ``multiprocessing`` forkserver, with the imports as
its preload), and runs train.py there as Python runs a script: ``sys.argv``, the working directory, the
environment, stdin/stdout/stderr, the script's folder on ``sys.path``, default signal handlers, exit
status (``-N`` for a signal), and at exit the threads joined and the ``atexit`` handlers run.

A real interpreter is used instead (``subprocess.run``) where a fork could not behave the same:
an environment that differs from the server's in a variable read when Python or a library starts
(:data:`START_UP_VARIABLES`: ``PYTHONPATH`` and the ``faults/`` sitecustomize, thread counts, ...),
and always with ``POOLSTUDY_TEST_REAL_PROCESSES=1``. Tests that signal or watch the process (Ctrl-C,
SIGTERM) start it with ``subprocess.Popen`` themselves.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "train.py"
# Variables read when the interpreter or a preloaded library starts (Python itself, the dynamic loader,
# the OpenMP/BLAS/oneDNN runtimes torch loads, torch's and CUDA's start-up settings, the C allocator):
# a fork of the server would run with the server's values, so a command whose environment differs in
# one of them gets a real interpreter. Any other variable is read when a job runs and is simply set in
# the fork (the project's POOLSTUDY_*, and what libraries put into the test process's environment as
# they run, e.g. MLflow's and cuBLAS's settings).
START_UP_VARIABLES = ("PYTHON", "LD_", "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "DNNL_", "ONEDNN_", "TORCH_",
                      "PYTORCH_", "CUDA_", "NVIDIA_", "MALLOC_", "GLIBC_TUNABLES", "PATH")
# What ``python train.py`` imports before it reads its arguments, and the plugins Hydra's scan imports.
# Only imports: no thread pool or open file may exist before the fork. (The forkserver imports these from
# the interpreter's own path: Python 3.11's forkserver ignores the caller's sys.path, and drops
# a module that fails to import.)
PRELOAD = ["torch", "torchvision", "hydra", "optuna", "joblib", "poolstudy.jobs.cmdline", "poolstudy.jobs.interrupt",
           "poolstudy.jobs.multirun", "poolstudy.jobs.shell", "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
           "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper", "hydra_plugins.poolstudy_slurm.slurm_launcher",
           "hydra_plugins.poolstudy_sweeper.sweeper"]

_context: multiprocessing.context.ForkServerContext | None = None
_server_env: dict[str, str] | None = None
_lock = threading.Lock()


def _server() -> multiprocessing.context.ForkServerContext:
    global _context, _server_env
    with _lock:
        if _context is None:
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(PRELOAD)
            _server_env = dict(os.environ)  # what the server (started on first use) inherits
        return _context


def _forkable(env: dict[str, str]) -> bool:
    if os.environ.get("POOLSTUDY_TEST_REAL_PROCESSES") == "1" or env.get("POOLSTUDY_TEST_REAL_PROCESSES") == "1":
        return False
    base = _server_env if _server_env is not None else dict(os.environ)
    differing = {k for k in set(base) | set(env) if base.get(k) != env.get(k)}
    return not any(k.startswith(START_UP_VARIABLES) for k in differing)


def run(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | str = ROOT, timeout: float = 600,
        script: Path = TRAIN) -> subprocess.CompletedProcess:
    """``python <script> *args`` in ``cwd`` with ``env`` (default: this process's), its output captured
    as text; raises :class:`subprocess.TimeoutExpired` after ``timeout`` seconds, as ``subprocess.run``."""
    env = dict(os.environ if env is None else env)
    command = [sys.executable, str(script), *args]
    if not _forkable(env):
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    ctx = _server()
    with tempfile.TemporaryDirectory(prefix="trainpy-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        proc = ctx.Process(target=_main, args=(str(script), list(args), env, str(cwd), str(out), str(err)))
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the job and whatever it started
            proc.join()
            raise subprocess.TimeoutExpired(command, timeout, out.read_text(errors="replace"),
                                            err.read_text(errors="replace"))
        if not err.exists():
            raise RuntimeError(f"the forkserver's child for {command} ended ({proc.exitcode}) before it started "
                               "the script; see the output above, or set POOLSTUDY_TEST_REAL_PROCESSES=1")
        return subprocess.CompletedProcess(command, proc.exitcode, out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))


def _main(script: str, args: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """In the fork: become ``python <script> *args`` and exit with its status."""
    os.setpgid(0, 0)  # its own process group, so a timeout stops the processes it started too
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")
    sys.argv = [script, *args]
    sys.path[0:0] = [str(Path(script).parent)]
    code, interrupted = 0, False
    try:
        import runpy

        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:  # uncaught: Python ends killed by SIGINT, status -2
        interrupted = True
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:  # what a real interpreter does at exit, in its order (a multiprocessing child does neither):
        threading._shutdown()  # join the non-daemon threads, after the hooks libraries registered for them
        atexit._run_exitfuncs()  # (e.g. loky stopping its workers, before multiprocessing joins its children)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if interrupted:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)

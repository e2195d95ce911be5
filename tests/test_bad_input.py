"""Bad input, one case per test: train.py run as a subprocess must print one clear message naming
the key or file and what is valid, exit non-zero, show no traceback, leave nothing half-written
and never print or save a storage password.

POOLSTUDY_UPDATE_DOCS=1 python -m pytest tests/test_bad_input.py   rewrites docs/bad_input.md
(case, command, exit status, message printed) from the run.
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT
from datafiles import make_idx_dataset

SECRET = "s3cr3t-Pw0rd"
DOC = ROOT / "docs" / "bad_input.md"
QUICK = ["trainer.epochs=1", "trainer.progress=false", "invariance.enabled=false"]
HPO = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.final_seeds=0"]


def _truncate(data: Path) -> None:
    path = data / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))  # a valid gzip of half the images


def _corrupt(data: Path) -> None:
    (data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage" * 10)


def _file_in_the_way(tmp: Path) -> None:
    (tmp / "taken").write_text("a file where the output folder should go\n")


@dataclass
class Case:
    name: str
    args: list[str]
    expect: list[str]                    # substrings of the message
    prepare: Callable[[Path], None] | None = None   # called with the data folder
    prepare_tmp: Callable[[Path], None] | None = None
    data: str = "data"                   # data_dir, relative to the test's folder
    exit_code: int = 2


CASES = [
    Case("unknown group option", ["model=maxpooll"], ["Could not find 'model/maxpooll'", "Available options in 'model'",
                                                      "strided"], exit_code=1),
    Case("unknown key", ["trainer.epoch=3"], ["Could not override 'trainer.epoch'", "Key 'epoch' is not in struct"],
         exit_code=1),
    Case("wrong type", ["trainer.epochs=abc"], ["trainer.epochs = 'abc' is not valid: it must be an integer >= 1"]),
    Case("negative learning rate", ["optimizer.lr=-0.1"], ["optimizer.lr = -0.1 is not valid: it must be a number > 0"]),
    Case("zero batch size", ["trainer.batch_size=0"], ["trainer.batch_size = 0 is not valid: it must be an integer >= 1"]),
    Case("stride 0", ["model.downsample.stride=0"], ["model.downsample.stride = 0 is not valid"]),
    Case("dropout 1.5", ["model.dropout=1.5"], ["model.dropout = 1.5 is not valid: it must be a number in [0, 1)"]),
    Case("kernel/stride larger than the feature map", ["model.downsample.kernel_size=9", "model.downsample.stride=9"],
         ["layer 'conv2.3'", "kernel_size=9"]),
    Case("published operator on LeNet", ["model=published"],
         ["model=published keeps the downsampling of a network built elsewhere", "model=maxpool"]),
    Case("stride that no convolution can take", ["arch=torchvision", "model.name=squeezenet1_1", "model=strided"],
         ["model=strided cannot remove the pool 'features.5'", "'cat()'", "model=published"]),
    Case("VGG's five pools on 28x28 images", ["arch=vgg", "model.width=0.125"],
         ["layer 'features.28'", "gets a 64x1x1 input", "Use a dataset with larger images, or another model= operator"]),
    Case("missing data folder", [], ["MNIST not found", "<tmp>/nowhere/MNIST/raw"], data="nowhere"),
    Case("truncated data file", [], ["<tmp>/data/MNIST/raw/train-images-idx3-ubyte.gz"], prepare=_truncate),
    Case("corrupted data file", [], ["<tmp>/data/MNIST/raw/t10k-labels-idx1-ubyte.gz", "damaged"], prepare=_corrupt),
    Case("unwritable output folder", ["hydra.run.dir=<tmp>/taken/run"],
         ["hydra.run.dir = '<tmp>/taken/run' cannot be used as the output folder", "<tmp>/taken is a file"],
         prepare_tmp=_file_in_the_way),
    Case("unwritable sweep folder", ["-m", "hydra.sweep.dir=<tmp>/taken/sweep"],
         ["hydra.sweep.dir = '<tmp>/taken/sweep' cannot be used", "<tmp>/taken is a file"],
         prepare_tmp=_file_in_the_way),
    Case("unreachable storage", [*HPO, "hydra.sweeper.storage=postgresql://bob@127.0.0.1:9/hpo"],
         ["Cannot open the Optuna storage 'postgresql://bob@127.0.0.1:9/hpo'", "reachable"]),
    Case("wrong storage URL", [*HPO, "hydra.sweeper.storage=no-such-db://x"],
         ["hydra.sweeper.storage = 'no-such-db://x' is not a valid storage URL", "journal:"]),
    Case("storage URL with a password", [*HPO, f"hydra.sweeper.storage=postgresql://bob:{SECRET}@127.0.0.1:9/hpo"],
         ["hydra.sweeper.storage = 'postgresql://bob:***@127.0.0.1:9/hpo' contains a password", "PGPASSWORD",
          "${oc.env:"]),
]

_results: dict[str, tuple[str, int, str]] = {}


@pytest.fixture(scope="module")
def idx_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("idx")
    make_idx_dataset(root, n_train=200, n_test=50)
    return root


def _normalise(text: str, tmp: Path) -> str:
    return text.replace(str(tmp), "<tmp>").replace(str(ROOT), "<repo>")


def _message(output: str) -> str:
    """What the user reads, without Hydra's standard hint line."""
    lines = [line for line in output.strip().splitlines() if "HYDRA_FULL_ERROR" not in line]
    return "\n".join(lines).strip()


@pytest.mark.parametrize("case", CASES, ids=[c.name.replace(" ", "_").replace("/", "_") for c in CASES])
def test_bad_input(case: Case, idx_source: Path, tmp_path: Path):
    shutil.copytree(idx_source, tmp_path / "data")
    if case.prepare:
        case.prepare(tmp_path / "data")
    if case.prepare_tmp:
        case.prepare_tmp(tmp_path)
    args = [a.replace("<tmp>", str(tmp_path)) for a in case.args]
    if not any(a.startswith("hydra.run.dir=") or a.startswith("hydra.sweep.dir=") for a in args):
        args.append(f"hydra.{'sweep' if '-m' in args else 'run'}.dir={tmp_path / 'out'}")
    env = {**os.environ, "POOLSTUDY_DATA": str(tmp_path / case.data), "POOLSTUDY_CACHE": str(tmp_path / "cache")}
    env.pop("HYDRA_FULL_ERROR", None)
    flags, overrides = [a for a in args if a.startswith("-")], [a for a in args if not a.startswith("-")]
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *flags, *QUICK, *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    message = _normalise(_message(proc.stderr), tmp_path)

    assert proc.returncode == case.exit_code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for needle in case.expect:
        assert needle in message, message
    # one message: our errors are a single paragraph (Hydra's composition errors list the options)
    if case.exit_code == 2:
        assert message.startswith("error: ") and message.count("error: ") == 1 and "\n" not in message, message
    # nothing half-written: no results, checkpoints or temporary files anywhere
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in written if p.name in ("metrics.json", "checkpoint.pt") or p.name.endswith(".tmp")], written
    # the password is neither printed nor saved
    assert SECRET not in output
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]
    if "storage" in case.name or "unwritable" in case.name:  # stopped before any job folder exists
        assert not (tmp_path / "out").exists() and not (tmp_path / "taken").is_dir()

    command = "python train.py " + " ".join(shlex.quote(_normalise(a, tmp_path)) for a in case.args)
    command = command.replace(SECRET, "<password>")
    _results[case.name] = (command.strip(), proc.returncode, message)


def test_docs_table_lists_every_case():
    """docs/bad_input.md is generated from this module (POOLSTUDY_UPDATE_DOCS=1); it must not fall behind."""
    text = DOC.read_text()
    for case in CASES:
        assert f"| {case.name} |" in text, f"{case.name!r} missing from {DOC}; regenerate it"


@pytest.fixture(scope="module", autouse=True)
def write_docs():
    yield
    if os.environ.get("POOLSTUDY_UPDATE_DOCS") != "1" or len(_results) != len(CASES):
        return
    rows = []
    for case in CASES:
        command, code, message = _results[case.name]
        cell = re.sub(r"\s*\n\s*", " / ", message).replace("|", "\\|")
        rows.append(f"| {case.name} | `{command}` | {code} | {cell} |")
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(
        "# Bad input: what each mistake prints\n\n"
        "Generated by `POOLSTUDY_UPDATE_DOCS=1 python -m pytest tests/test_bad_input.py` (one test per row). "
        "Every case exits non-zero without a traceback and leaves no `metrics.json`, checkpoint or temporary file; "
        "configuration mistakes record `status.json` (`invalid`) in the job folder. `<tmp>` stands for the test's "
        "folder; every command also sets `data_dir` and `trainer.epochs=1 trainer.progress=false "
        "invariance.enabled=false`.\n\n"
        "| case | command | exit | message printed (stderr; line breaks shown as /) |\n|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )

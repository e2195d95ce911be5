"""Bad input, one case per test: train.py run as a subprocess must print one clear message naming
the key or file and what is valid, exit non-zero, show no traceback, leave nothing half-written
and never print or save a storage password.

POOLSTUDY_UPDATE_DOCS=1 python -m pytest tests/e2e/test_bad_input.py   rewrites docs/bad_input.md
(case, command, exit status, message printed) from the run.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, trainpy
from helpers.datafiles import make_gray_folder, make_idx_dataset, save_images

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


def _empty_class(data: Path) -> None:
    for split in ("train", "test"):
        (make_gray_folder(data / "imgs") / split / "c").mkdir()


def _bad_images(data: Path) -> None:
    import numpy as np

    root = make_gray_folder(data / "imgs")
    (root / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (root / "test" / "b" / "notes.txt").write_text("not an image\n")
    save_images(root / "train" / "b", [np.zeros((32, 32), np.uint8)], start=50)


def _no_blue(data: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 2)):
        for cls in ("a", "b"):
            save_images(data / "imgs" / split / cls, [np.dstack([rng.integers(0, 256, (28, 28)), rng.integers(0, 256, (
                28, 28)), np.zeros((28, 28))]).astype(np.uint8) for _ in range(n)])


def _gray_32px(data: Path) -> None:
    make_gray_folder(data / "imgs", size=32)


def _file_in_the_way(tmp: Path) -> None:
    (tmp / "taken").write_text("a file where the output folder should go\n")


def _failed_maxpool_job(tmp: Path) -> None:
    """<tmp>/done: the folder of a max-pool job that failed (a result: its status.json), as train.py leaves it."""
    from omegaconf import OmegaConf

    from helpers import compose

    cfg = compose(["model=maxpool", *QUICK], data_dir=tmp / "data", cache=tmp / "cache")
    (tmp / "done" / ".hydra").mkdir(parents=True)
    (tmp / "done" / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (tmp / "done" / "status.json").write_text('{"status": "failed", "error": "training loss became nan"}\n')


def _damaged_optuna_db(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "optuna.db").write_bytes(b"this is not an SQLite file\n" * 200)


def _lost_study(tmp: Path) -> None:  # a study's trial folders, its optuna.db gone
    (tmp / "out" / "lenet-maxpool-mnist" / "trials" / "0").mkdir(parents=True)


@dataclass
class Case:
    name: str
    args: list[str]
    expect: list[str]                    # substrings of the message
    prepare: Callable[[Path], None] | None = None   # called with the data folder
    prepare_tmp: Callable[[Path], None] | None = None
    data: str = "data"                   # data_dir, relative to the test's folder
    exit_code: int = 2
    offline: bool = False                # needs a machine whose download servers do not answer
    writes_nothing: bool = False         # no file under the test's folder is created or changed
    # runs the command the message suggests (a CompletedProcess, the sweep folder it wrote) and checks its effect
    fix: Callable[[subprocess.CompletedProcess, Path], None] | None = None


def _studies(sweep: Path) -> dict[str, dict]:
    """study_summary.json of each study, after checking that every trial trained what its study's name says."""
    out = {}
    for path in sorted(sweep.glob("*/study_summary.json")):
        s = json.loads(path.read_text())
        assert s["study_name"] == path.parent.name
        assert path.parent.name.startswith(f"{s['arch']}-{s['downsample']}-{s['dataset']}")
        for job in (path.parent / "trials").iterdir():
            m = json.loads((job / "metrics.json").read_text())
            assert (m["model"]["arch"], m["model"]["downsample"]["type"], m["dataset"]["name"]) == (
                s["arch"], s["downsample"], s["dataset"]) and m["hpo"]["study_name"] == s["study_name"]
        out[s["study_name"]] = s
    return out


def _trial0(sweep: Path, study: str) -> dict:
    return json.loads((sweep / study / "trials" / "0" / "metrics.json").read_text())


RECIPE_SPACE = {"optimizer", "optimizer.lr", "optimizer.weight_decay", "trainer.batch_size", "model.dropout"}


def _fixed_interval(proc, sweep):
    (s,) = _studies(sweep).values()
    assert set(s["search_space"]) == RECIPE_SPACE  # the recipe's other dimensions stay
    assert s["search_space"]["optimizer.lr"]["attributes"] == {"low": 1e-4, "high": 1e-2, "log": False, "step": None}


def _fixed_unknown_key(proc, sweep):
    (s,) = _studies(sweep).values()
    assert set(s["search_space"]) == RECIPE_SPACE
    listing = trainpy.run(["--cfg", "job"], cwd=ROOT)  # the other suggestion: it lists the job's keys
    assert listing.returncode == 0 and "optimizer:" in listing.stdout and "  lr: " in listing.stdout


def _fixed_grid_key(proc, sweep):
    studies = _studies(sweep)
    assert sorted(studies) == ["lenet-maxpool-mnist-optimizeradam", "lenet-maxpool-mnist-optimizersgd"]
    assert all("optimizer" not in s["search_space"] for s in studies.values())
    assert _trial0(sweep, "lenet-maxpool-mnist-optimizersgd")["optimizer"]["name"] == "SGD"


def _fixed_held_value(proc, sweep):
    (s,) = _studies(sweep).values()
    assert "optimizer.lr" not in s["search_space"] and _trial0(sweep, s["study_name"])["optimizer"]["lr"] == 0.01


def _fixed_variant_grid(proc, sweep):
    studies = _studies(sweep)
    assert sorted(studies) == ["lenet-maxpool-mnist", "lenet-strided-mnist"]
    assert all(not {"model", "dataset", "seed"} & set(s["search_space"]) for s in studies.values())


def _fixed_empty_space(proc, sweep):
    (s,) = _studies(sweep).values()
    assert set(s["search_space"]) == {"optimizer.lr"}


def _fixed_lost_study(proc, sweep):
    assert sorted(_studies(sweep.parent / "out-2")) == ["lenet-maxpool-mnist"]
    assert not (sweep / "optuna.db").exists()


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
    Case("dropout position", ["model.dropout_position=middle"],
         ["model.dropout_position = 'middle' is not valid: it must be one of before_bn, after_bn"]),
    Case("kernel/stride larger than the feature map", ["model.downsample.kernel_size=9", "model.downsample.stride=9"],
         ["layer 'conv2.3'", "kernel_size=9"]),
    Case("published operator on LeNet", ["model=published"],
         ["model=published keeps the downsampling of a network built elsewhere", "model=maxpool"]),
    Case("stride that no convolution can take", ["arch=torchvision", "model.name=squeezenet1_1", "model=strided"],
         ["model=strided cannot remove the pool 'features.5'", "'cat()'", "model=published"]),
    Case("VGG's five pools on 28x28 images", ["arch=vgg", "model.width=0.125"],
         ["layer 'features.28'", "gets a 64x1x1 input", "Use a dataset with larger images, or another model= operator"]),
    Case("batch of one image where a BatchNorm map is 1x1",
         ["dataset=imagefolder", "dataset.root=<tmp>/data/imgs", "arch=vgg", "model=strided", "model.width=0.125",
          "trainer.batch_size=1"],
         ["trainer.batch_size = 1 cannot train this model", "BatchNorm layer 'features.26' gets a 64x1x1 map",
          "Use trainer.batch_size=2 or more"], prepare=_gray_32px),
    Case("missing data folder", ["dataset.download=false"], ["MNIST not found", "<tmp>/nowhere/MNIST/raw",
                                                              "dataset=shapes"], data="nowhere"),
    Case("missing data folder, no network", [], ["MNIST not found", "<tmp>/nowhere/MNIST/raw",
                                                 "dataset.download=auto and none of the download servers answered",
                                                 "dataset.download=true", "dataset=shapes"], data="nowhere", offline=True),
    Case("unknown download setting", ["dataset.download=maybe"],
         ["dataset.download = 'maybe' is not valid: it must be true, false or auto"]),
    Case("empty validation split", ["dataset.train_subset=20", "dataset.val_fraction=0.01"],
         ["The validation set of dataset mnist holds 0 image(s)", "val_fraction"]),
    Case("empty class folder", ["dataset=imagefolder", "dataset.root=<tmp>/data/imgs"],
         ["Image folder <tmp>/data/imgs has class folder(s) without images: train/c; test/c"], prepare=_empty_class),
    Case("unreadable images", ["dataset=imagefolder", "dataset.root=<tmp>/data/imgs"],
         ["3 file(s) in image folder <tmp>/data/imgs cannot be used", "train/a/broken.png", "test/b/notes.txt",
          "train/b/0050.png: 32x32 pixels, most images are 28x28"], prepare=_bad_images),
    Case("constant image channel", ["dataset=imagefolder", "dataset.root=<tmp>/data/imgs"],
         ["channel 2 (blue) is 0 everywhere", "dataset.color_mode=grayscale"], prepare=_no_blue),
    Case("unknown colour mode", ["dataset=imagefolder", "dataset.root=<tmp>/data/imgs", "dataset.color_mode=cmyk"],
         ["dataset.color_mode = 'cmyk' is not valid: it must be one of auto, grayscale, rgb"], prepare=_empty_class),
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
    Case("MLflow folder store", ["logger=mlflow", "logger.mlflow.tracking_uri=./mlruns"],
         ["logger.mlflow.tracking_uri = './mlruns' is a folder store, which MLflow >= 3.13 no longer accepts",
          "logger.mlflow.tracking_uri=sqlite:///outputs/mlflow.db"], writes_nothing=True),
    Case("MLflow tracking URI with a password",
         ["-m", "logger=mlflow", f"logger.mlflow.tracking_uri=postgresql://bob:{SECRET}@127.0.0.1:9/mlflow"],
         ["logger.mlflow.tracking_uri = 'postgresql://bob:***@127.0.0.1:9/mlflow' contains a password", "PGPASSWORD",
          "${oc.env:POOLSTUDY_DB_PASSWORD}"], writes_nothing=True),
    Case("trackers swept instead of listed", ["-m", "logger=mlflow,tensorboard"],
         ["logger=mlflow,tensorboard sweeps a setting that does not change a job's result",
          "'logger=[mlflow,tensorboard]'"], writes_nothing=True),
    Case("unknown tracker", ["logger=wandb"], ["Could not find 'logger/wandb'", "Available options in 'logger'",
                                               "mlflow", "tensorboard"], exit_code=1),
    Case("storage password variable not set",
         [*HPO, "hydra.sweeper.storage=postgresql://bob:${oc.env:POOLSTUDY_DB_PASSWORD}@127.0.0.1:9/hpo"],
         ["hydra.sweeper.storage uses ${oc.env:POOLSTUDY_DB_PASSWORD}", "POOLSTUDY_DB_PASSWORD is not set"]),
    Case("environment variable not set", ["seed=${oc.env:POOLSTUDY_UNSET_VARIABLE}"],
         ["seed uses ${oc.env:POOLSTUDY_UNSET_VARIABLE}", "export POOLSTUDY_UNSET_VARIABLE=",
          "${oc.env:POOLSTUDY_UNSET_VARIABLE,<default>}"]),
    Case("repeated sweep values", ["-m", "model=maxpool,maxpool,strided,strided,strided"],
         ["model=maxpool,maxpool,strided,strided,strided repeats values (maxpool 2 times, strided 3 times)",
          "Give each value once, model=maxpool,strided", "seed=0,1,2"]),
    Case("sweep over a setting outside the job identity", ["-m", "trainer.threads=1,2"],
         ["trainer.threads=1,2 sweeps a setting that does not change a job's result", "trainer.threads=1"]),
    Case("sweep key given twice", ["-m", "seed=0,1", "seed=2"],
         ["seed is given twice (seed=0,1 and seed=2)", "Give it once, with all its values in one list"]),
    Case("search space without hparams_search", ["-m", "hydra.sweeper.params={optimizer.lr:'0.01,0.02'}"],
         ["hydra.sweeper.params={optimizer.lr:'0.01,0.02'} is a search space, which needs the HPO sweeper",
          "python train.py -m hparams_search=optuna \"+hydra.sweeper.params={optimizer.lr:'0.01,0.02'}\"",
          "give the values directly instead: optimizer.lr=0.01,0.02"]),
    Case("seed search space without hparams_search", ["-m", "hydra.sweeper.params={seed:'0,1'}"],
         ["hydra.sweeper.params={seed:'0,1'} is a search space, which needs the HPO sweeper (hparams_search=optuna), "
          "and that does not take these as search dimensions: seed: the random seed is not a hyper-parameter",
          "give the values directly instead: seed=0,1"]),
    Case("--info with -m", ["-m", "--info=config"], ["--info does not combine with -m", "--cfg job"]),
    Case("folder of another configuration", ["model=avgpool", "hydra.run.dir=<tmp>/done"],
         ["<tmp>/done already holds status.json of another configuration; this run differs in "
          "model.downsample.type: 'maxpool' -> 'avgpool'", "hydra.run.dir=<tmp>/done-2"],
         prepare_tmp=_failed_maxpool_job),
    Case("HPO interval on the command line", [*HPO, "optimizer.lr=interval(1e-4,1e-2)"],
         ["an interval on the command line cannot form a grid", "\"++hydra.sweeper.params={optimizer.lr:'interval(1e-4,"
          "1e-2)'}\""], writes_nothing=True, fix=_fixed_interval),
    Case("HPO search dimension not in the job config",
         [*HPO, "++hydra.sweeper.params={optimizer.learning_rate:'interval(1e-4,1e-2)'}"],
         ["hydra.sweeper.params.optimizer.learning_rate = 'interval(1e-4,1e-2)' does not fit the job config",
          "Could not override 'optimizer.learning_rate'", "\"++hydra.sweeper.params={optimizer.learning_rate:null}\""],
         writes_nothing=True, fix=_fixed_unknown_key),
    Case("HPO search range beyond the valid values", [*HPO, "++hydra.sweeper.params={model.dropout:'interval(0.0,1.5)'}"],
         ["at model.dropout=1.5: model.dropout = 1.5 is not valid: it must be a number in [0, 1)"], writes_nothing=True),
    Case("HPO key both grid and searched", [*HPO, "optimizer=adam,sgd"],
         ["optimizer is both a grid key", "\"++hydra.sweeper.params={optimizer:null}\""], writes_nothing=True,
         fix=_fixed_grid_key),
    Case("HPO command-line value a search dimension overrides", [*HPO, "optimizer.lr=0.01"],
         ["optimizer.lr=0.01 on the command line would be overridden in every trial",
          "\"++hydra.sweeper.params={optimizer.lr:null}\""], writes_nothing=True, fix=_fixed_held_value),
    Case("HPO study file combined with the recipe", [*HPO, "experiment=seed_replication", "dataset=mnist"],
         ["experiment=seed_replication is a study for the basic sweeper", "(model, dataset, seed) are its grid",
          "(lenet-maxpool-mnist)", "\"++hydra.sweeper.params={model:null,dataset:null,seed:null}\" model=maxpool,strided"],
         writes_nothing=True, fix=_fixed_variant_grid),
    Case("HPO variant as a search dimension", [*HPO, "++hydra.sweeper.params={model:'choice(maxpool,strided)'}"],
         ["hydra.sweeper.params.model = 'choice(maxpool,strided)': changes what the study trains: downsample maxpool "
          "-> strided", "\"++hydra.sweeper.params={model:null}\" model=maxpool,strided"], writes_nothing=True,
         fix=_fixed_variant_grid),
    Case("HPO seed as a search dimension", [*HPO, "++hydra.sweeper.params={seed:'choice(0,1)'}"],
         ["the random seed is not a hyper-parameter", "\"++hydra.sweeper.params={seed:null}\""], writes_nothing=True),
    Case("HPO empty search space", [*HPO, "++hydra.sweeper.params={optimizer:null,optimizer.lr:null,"
                                          "optimizer.weight_decay:null,trainer.batch_size:null,model.dropout:null}"],
         ["hydra.sweeper.params defines no search dimension"], writes_nothing=True, fix=_fixed_empty_space),
    Case("HPO value listed twice in the grid", [*HPO, "model=maxpool,maxpool"],
         ["model=maxpool,maxpool repeats values (maxpool 2 times)", "Give each value once, model=maxpool"],
         writes_nothing=True),
    Case("HPO damaged optuna.db", HPO,
         ["The Optuna storage file <tmp>/out/optuna.db cannot be used", "file is not a database",
          "mv <tmp>/out/optuna.db <tmp>/out/optuna.db.damaged"], prepare_tmp=_damaged_optuna_db, writes_nothing=True),
    Case("HPO trial folders of a lost study", HPO,
         ["<tmp>/out/lenet-maxpool-mnist holds trial folders of a study 'lenet-maxpool-mnist' that the storage "
          "sqlite:///<tmp>/out/optuna.db does not contain", "hydra.sweep.dir=<tmp>/out-2"],
         prepare_tmp=_lost_study, writes_nothing=True, fix=_fixed_lost_study),
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


def _suggested_command(message: str) -> list[str]:
    """The arguments of the last ``python train.py ...`` command a message suggests."""
    start = [m.start() for m in re.finditer(r"python \S*train\.py ", message)][-1]
    args = shlex.split(re.match(r"(python \S*train\.py .*?)(?: ;|\.?$)", message[start:]).group(1))
    return args[2:]


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.fix else c for c in CASES],
                         ids=[c.name.replace(" ", "_").replace("/", "_") for c in CASES])
def test_bad_input(case: Case, idx_source: Path, tmp_path: Path):
    if case.offline:
        from poolstudy.data.download import network_answers, server_urls

        if any(network_answers(url)[0] for url in server_urls("MNIST")):
            pytest.skip("the download servers answer from this machine: the command would download MNIST")
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
    env.pop("POOLSTUDY_DB_PASSWORD", None)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    flags, overrides = [a for a in args if a.startswith("-")], [a for a in args if not a.startswith("-")]
    proc = trainpy.run([*flags, *QUICK, *overrides], cwd=ROOT, env=env, timeout=300)
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
    if any(word in case.name for word in ("storage", "unwritable", "sweep", "variable", "search", "-m")):
        # stopped before any job folder exists
        assert not (tmp_path / "out").exists() and not (tmp_path / "taken").is_dir()
    if case.writes_nothing:
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
        assert case.prepare_tmp or not (tmp_path / "out").exists()
    if case.fix:  # the command the message suggests, typed
        fixed = trainpy.run(_suggested_command(proc.stderr), cwd=ROOT, env=env, timeout=600)
        assert fixed.returncode == 0, f"{message}\n{fixed.stderr[-3000:]}"
        case.fix(fixed, tmp_path / "out")

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
        "Generated by `POOLSTUDY_UPDATE_DOCS=1 python -m pytest tests/e2e/test_bad_input.py` (one test per row). "
        "Every case exits non-zero without a traceback and leaves no `metrics.json`, checkpoint or temporary file; "
        "configuration mistakes record `status.json` (`invalid`) in the job folder. `<tmp>` stands for the test's "
        "folder; every command also sets `data_dir` and `trainer.epochs=1 trainer.progress=false "
        "invariance.enabled=false`.\n\n"
        "| case | command | exit | message printed (stderr; line breaks shown as /) |\n|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )

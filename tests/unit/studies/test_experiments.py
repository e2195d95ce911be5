"""The ready-made studies (conf/experiment/): each expands to the jobs its header claims, with the settings
it states; RESULTS.md's reduced versions (conf/experiment/results/) run exactly the jobs their records'
commands ran; the old form +sweeps=<study> still runs the study."""

import json
import re

import pytest
import torch
from hydra.utils import instantiate

from helpers import CONF_DIR, ROOT, load_script, trainpy
from helpers.studies import compose_job, expansion, train_args
from poolstudy.errors import InvalidModelError
from poolstudy.jobs.cmdline import current_forms
from poolstudy.jobs.sweep import expand_jobs, grid_params
from poolstudy.models import DOWNSAMPLERS
from poolstudy.models.allcnn import MODEL_C_WINDOW
from poolstudy.models.profile import stage_sizes, trace_shapes

EXPERIMENTS = CONF_DIR / "experiment"
STUDIES = ["seed_replication", "operator_zoo", "kernel_stride_grid", "allcnn_c_family", "dropout_fixes",
           "beyond_lenet_resnet", "beyond_lenet_vgg"]
# the operators LeNet builds from (published keeps a network built elsewhere: resnet, vgg, torchvision)
BUILT_IN = {name for name, cls in DOWNSAMPLERS.items() if cls.at_points != "published"}
make_results = load_script(ROOT / "sweeps" / "make_results.py")


def study_jobs(study: str) -> list[list[str]]:
    """The override list of every job, expanded exactly as Hydra's basic sweeper does."""
    return expand_jobs(grid_params(compose_job([f"experiment={study}"])))


def claimed_jobs(study: str) -> int:
    text = (EXPERIMENTS / f"{study}.yaml").read_text()
    return int(re.search(r"= (\d+) jobs", text).group(1))


def job_value(job: list[str], key: str) -> str:
    return dict(o.split("=", 1) for o in job)[key]


@pytest.fixture(autouse=True)
def _elsewhere(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the studies are train.py's own config group: found from any working directory


def test_the_studies_are_there():
    every = sorted(str(p.relative_to(EXPERIMENTS).with_suffix("")) for p in EXPERIMENTS.rglob("*.yaml"))
    runner = sorted(exp for steps in make_results.STUDIES.values() for exp, _ in steps)
    assert sorted(STUDIES + [e for e in runner if e.startswith("results/")]) == every
    assert set(runner) <= set(every)  # every study RESULTS.md reports is a config
    for path in EXPERIMENTS.rglob("*.yaml"):
        assert path.read_text().startswith("# @package _global_\n"), path


@pytest.mark.parametrize("study", STUDIES)
def test_each_study_has_the_job_count_it_claims(study):
    jobs = study_jobs(study)
    assert len(jobs) == claimed_jobs(study)
    assert len({tuple(j) for j in jobs}) == len(jobs)


def test_seed_replication_jobs():
    jobs = study_jobs("seed_replication")
    assert {(job_value(j, "model"), job_value(j, "dataset"), job_value(j, "seed")) for j in jobs} == {
        (m, d, str(s)) for m in ("maxpool", "strided") for d in ("mnist", "fashion_mnist", "cifar10") for s in range(5)}


def test_operator_zoo_covers_every_operator():
    jobs = study_jobs("operator_zoo")
    assert {job_value(j, "model") for j in jobs} == BUILT_IN
    assert {job_value(j, "dataset") for j in jobs} == {"mnist", "fashion_mnist", "cifar10"}
    assert {job_value(j, "seed") for j in jobs} == {"0", "1", "2"}


def test_kernel_stride_grid_reports_the_invalid_cells_it_claims():
    jobs = study_jobs("kernel_stride_grid")
    valid = set()
    for job in jobs:
        if job_value(job, "seed") != "0" or job_value(job, "dataset") != "mnist":
            continue
        cfg = compose_job(["experiment=kernel_stride_grid", *job])
        ds = cfg.model.downsample
        model = instantiate(cfg.model, _convert_="all")
        try:
            trace_shapes(model, (1, 28, 28))
        except InvalidModelError:
            continue
        valid.add((ds.type, ds.kernel_size, ds.stride))
    assert valid == {("maxpool", 2, 2), ("maxpool", 3, 2), ("strided", 2, 2), ("strided", 3, 2), ("strided", 5, 2)}
    text = (EXPERIMENTS / "kernel_stride_grid.yaml").read_text()
    per_cell = len(jobs) // 12
    assert f"those {(12 - len(valid)) * per_cell}" in text and f"{len(valid) * per_cell} jobs train" in text
    reduced = (EXPERIMENTS / "results" / "kernel_stride_grid.yaml").read_text()  # one dataset of the two
    assert f"({(12 - len(valid)) * per_cell // 2} invalid, {len(valid) * per_cell // 2} train)" in reduced


def test_allcnn_c_family_is_the_paper_family_at_the_model_c_window():
    jobs = study_jobs("allcnn_c_family")
    assert {job_value(j, "model") for j in jobs} == {"maxpool", "strided", "convpool", "conv"}
    for job in jobs[:4]:
        cfg = compose_job(["experiment=allcnn_c_family", *job])
        assert cfg.model.arch == "allcnn_c" and cfg.dataset.name == "cifar10"
        geometry = {k: cfg.model.downsample[k] for k in MODEL_C_WINDOW}
        assert geometry == MODEL_C_WINDOW  # the study file wins over conf/model/'s 2x2 windows
        model = instantiate(cfg.model, _convert_="all")
        assert stage_sizes(trace_shapes(model, (3, 32, 32)))["conv3"] == [48, 6, 6]


@pytest.mark.parametrize("arch, published", [("resnet", "strided"), ("vgg", "maxpool")])
def test_beyond_lenet_studies_are_resnet20_and_vgg11_on_cifar10(arch, published):
    study = f"beyond_lenet_{arch}"
    jobs = study_jobs(study)
    assert {job_value(j, "model") for j in jobs} == {"maxpool", "strided", "avgpool", "blurpool"}
    assert {job_value(j, "seed") for j in jobs} == {"0", "1", "2"}
    cfg = compose_job([f"experiment={study}", *jobs[0]])
    assert (cfg.model.arch, cfg.model.depth, cfg.dataset.name) == (arch, 20 if arch == "resnet" else 11, "cifar10")
    assert (cfg.dataset.train_subset, cfg.dataset.test_subset, cfg.trainer.epochs) == (10000, None, 5)
    # the operator the published network uses builds exactly the published network
    nets = []
    for name in (published, "published"):
        torch.manual_seed(0)
        nets.append(instantiate(compose_job([f"experiment={study}", f"model={name}"]).model, _convert_="all").eval())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(nets[0](x), nets[1](x))


def _recorded_steps() -> list[tuple[str, int, str]]:
    steps = []
    for record in sorted((ROOT / "docs" / "studies").glob("*/study.json")):
        study = json.loads(record.read_text())
        steps += [(study["study"], i, command) for i, command in enumerate(study["commands"])]
    return steps


@pytest.mark.parametrize("study,index,recorded", _recorded_steps(), ids=lambda v: str(v)[:40])
def test_the_runners_configs_run_exactly_the_recorded_jobs(study, index, recorded):
    """Each archived study's recorded command and the runner's command for that step (its experiment
    config; for a step that chose its operators, the operators the record chose) give the same jobs."""
    experiment, folder = make_results.STUDIES[study][index]
    chosen = None
    if experiment in make_results.CHOSEN:
        chosen = [a for a in train_args(recorded) if a.startswith("model=")]
    runner = make_results.command(study, experiment, folder, chosen)
    assert recorded.endswith(f"hydra.sweep.dir={runner[-1].split('=', 1)[1]}")  # the same folder
    old, new = expansion(train_args(recorded)), expansion(train_args(" ".join(["python", *runner[1:]])))
    assert new["jobs"] == old["jobs"] > 0
    assert new["varying"] == old["varying"]
    assert new["first"] == old["first"]
    assert new["sweeper"] == old["sweeper"]


@pytest.mark.parametrize("study", ["beyond_lenet_resnet", "beyond_lenet_vgg"])
def test_the_beyond_lenet_records_command_form_gives_the_runners_jobs(study):
    """The Beyond LeNet studies were first run (for RESULTS.md section 7) as sweeps/<study>.yaml, before the studies
    became configs: their study.json records this command. It must run exactly the jobs the runner's config runs."""
    recorded = (f"python train.py -m +sweeps={study} hydra/launcher=local_parallel trainer.progress=false "
                f"hydra.sweep.dir=outputs/results/{study}")
    test_the_runners_configs_run_exactly_the_recorded_jobs(study, 0, recorded)


def test_the_old_study_form_is_translated_with_a_note():
    argv, notes = current_forms(["train.py", "-m", "+sweeps=seed_replication", "seed=0"])
    assert argv == ["train.py", "-m", "experiment=seed_replication", "seed=0"]
    assert notes == ["+sweeps=seed_replication is now experiment=seed_replication (the studies are in "
                     "conf/experiment/); running that"]
    assert current_forms(["train.py", "model=strided"]) == (["train.py", "model=strided"], [])


def test_the_old_study_form_still_runs_the_study(tmp_path):
    proc = trainpy.run(["-m", "+sweeps=seed_replication", "seed=0", "--cfg", "job"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("note: +sweeps=seed_replication is now experiment=seed_replication")
    assert proc.stdout.count("# job ") == 6 and "# job 5 of 6: model=strided dataset=cifar10 seed=0" in proc.stdout

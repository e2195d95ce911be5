"""The benchmark runs and reports sane, positive figures (no timing targets asserted here)."""

import json

import pytest
import torch

from helpers import SHARED_DATA, require_real
from benchmarks import bench, common, sweeps


@pytest.mark.realdata
def test_bench_reports_positive_figures_for_every_case(tmp_path, cache_dir):
    require_real("MNIST")
    out = tmp_path / "bench.json"
    code = bench.main(["--data", "mnist", "--models", "maxpool", "strided", "--batch-sizes", "32", "--steps", "3",
                       "--reps", "2", "--workers", "0", "--data-dir", str(SHARED_DATA), "--cache-dir", str(cache_dir),
                       "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert [(c["model"], c["batch_size"]) for c in report["cases"]] == [("maxpool", 32), ("strided", 32)]
    for case in report["cases"]:
        ips = case["images_per_s"]
        assert set(ips) == {"peer_w0", "peer_w0_same_settings", "project", "limit", "data_path"}
        for figures in ips.values():
            assert len(figures["runs"]) == 2 and figures["min"] > 0 and figures["min"] <= figures["median"] <= figures["max"]
        assert case["best_peer"] == "peer_w0"
        for key, denominator in (("ratio_vs_peer", "peer_w0"), ("ratio_vs_limit", "limit"),
                                 ("data_path_share", "data_path"), ("ratio_vs_peer_same_settings", "peer_w0_same_settings")):
            per_rep = [p / d for p, d in zip(ips["project"]["runs"], ips[denominator]["runs"])]
            ratio = case["ratios"][key.removeprefix("ratio_")]
            assert ratio["runs"] == pytest.approx(per_rep) and case[key] == ratio["median"]
            assert ratio["min"] <= ratio["median"] <= ratio["max"]
        assert 0 < case["data_path_share"] < 1  # the batches alone are faster than training on them
    assert report["peak_memory"]["rss_mb"] > 0 and report["machine"]["torch_threads"] >= 1


@pytest.mark.realdata
def test_speed_options_each_run_the_project_loop(tmp_path, cache_dir, capsys):
    require_real("MNIST")
    out = tmp_path / "options.json"
    code = bench.main(["--options", "fast_layers", "channels_last", "bf16_autocast", "fused", "train_defaults", "--data", "mnist", "--models",
                       "maxpool", "--batch-sizes", "32", "--steps", "2", "--reps", "2", "--data-dir",
                       str(SHARED_DATA), "--cache-dir", str(cache_dir), "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["cases"] == []  # the peer/project/limit table is not run in --options mode
    (case,) = report["options"]
    assert list(case["options"]) == ["base", "fast_layers", "channels_last", "fused", "bf16_autocast",
                                     "train_defaults"]
    for figures in case["options"].values():
        assert len(figures["runs"]) == 2 and 0 < figures["min"] <= figures["median"] <= figures["max"]
        per_rep = sorted(r / b for r, b in zip(figures["runs"], case["options"]["base"]["runs"]))
        assert figures["speedup_vs_base"] == pytest.approx(sum(per_rep) / 2)  # the median of two
        assert figures["first_epoch_s"] > 0
    assert "channels_last" in capsys.readouterr().out


def test_paired_ratio_cancels_a_drift_that_the_ratio_of_medians_keeps():
    # B is 2x as fast as A; the machine's speed changes from one repetition to the next, and
    # in the third repetition something slowed B's run alone
    speed = [1.0, 0.6, 0.9, 0.5, 0.8]
    a = [100 * s for s in speed]
    b = [200 * s for s in speed]
    b[2] = 120
    ratio = common.paired_ratio(b, a)
    assert ratio["runs"] == pytest.approx([2, 2, 4 / 3, 2, 2])
    assert ratio["median"] == pytest.approx(2) and ratio["min"] == pytest.approx(4 / 3) and ratio["max"] == pytest.approx(2)
    assert common.statistics.median(b) / common.statistics.median(a) == pytest.approx(1.5)  # what it replaces
    with pytest.raises(ValueError):
        common.paired_ratio([1.0, 2.0], [1.0])


def test_project_is_set_up_as_train_py_and_the_peer_as_a_plain_script():
    import torch

    cfg = common.job_config("maxpool", "mnist")
    project_model, project_optimizer = common.set_up(cfg, 1, torch.device("cpu"))
    peer_model, peer_optimizer = common.set_up(cfg, 1, torch.device("cpu"), as_train_py=False)
    # the same architecture with the same initial weights
    assert [p.shape for p in project_model.parameters()] == [p.shape for p in peer_model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(project_model.parameters(), peer_model.parameters()))
    conv = project_model.conv2[0].weight
    assert cfg.trainer.channels_last == "auto" and conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    assert peer_model.conv2[0].weight.is_contiguous()
    assert type(project_optimizer) is type(peer_optimizer)
    assert project_optimizer.defaults["fused"] is True and peer_optimizer.defaults["fused"] is None
    assert project_optimizer.defaults["lr"] == peer_optimizer.defaults["lr"] == cfg.optimizer.lr


def test_the_peer_model_has_torchs_layers_and_fast_layers_is_the_only_difference():
    import torch

    from poolstudy.models.fast_cpu import FastCPUDropout, FastCPUMaxPool2d

    stock = {FastCPUDropout: torch.nn.Dropout, FastCPUMaxPool2d: torch.nn.MaxPool2d}
    cfg = common.job_config("maxpool", "mnist")
    project, _ = common.set_up(cfg, 1, torch.device("cpu"))
    peer, _ = common.set_up(cfg, 1, torch.device("cpu"), as_train_py=False)
    fast, _ = common.set_up(cfg, 1, torch.device("cpu"), as_train_py=False, fast_layers=True)
    ours = [type(m) for m in project.modules()]
    assert ours.count(FastCPUDropout) == 1 and ours.count(FastCPUMaxPool2d) == 2
    assert [type(m) for m in peer.modules()] == [stock.get(t, t) for t in ours]
    assert [type(m) for m in fast.modules()] == ours
    assert next(m for m in peer.modules() if isinstance(m, torch.nn.Dropout)).p == 0.4
    assert repr(peer.conv2[3]) == repr(torch.nn.MaxPool2d(2, 2))


def test_the_old_command_names_the_new_one():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "poolstudy.bench", "--options"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("from the repository root run: python -m benchmarks.bench --options")


def test_bench_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--steps", "0"])
    assert exc.value.code == 2 and "--steps" in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert bench.main(["--data", "mnist", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "MNIST not found" in capsys.readouterr().err


@pytest.mark.parametrize("jobs,cpus,threads", [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 16, 8), (4, 16, 4)])
def test_parallel_jobs_share_the_cores(jobs, cpus, threads):
    from poolstudy.jobs.shell import threads_per_job

    assert threads_per_job(jobs, cpus) == threads


@pytest.mark.slow
def test_whole_job_timing_reports_wall_and_rss(tmp_path, cache_dir):
    env = {"POOLSTUDY_CACHE": str(cache_dir), "PATH": "/usr/bin:/bin"}
    wall, rss, faults = sweeps.run_train(["dataset=shapes", "trainer.epochs=1", "dataset.train_subset=200",
                                          f"hydra.run.dir={tmp_path / 'job'}"], env)
    assert wall > 0 and rss > 50  # a torch process holds well over 50 MB
    assert faults > rss * 256 / 4  # at least a quarter of its resident 4 KiB pages were faulted in
    assert json.loads((tmp_path / "job" / "metrics.json").read_text())["job_time_s"] < wall


@pytest.mark.slow
@pytest.mark.heavy
def test_sweep_benchmark_reports_sane_overheads(tmp_path, cache_dir):
    from poolstudy.jobs.shell import threads_per_job

    env = {"POOLSTUDY_CACHE": str(cache_dir), "PATH": "/usr/bin:/bin"}
    small = ("dataset.train_subset=200", "dataset.test_subset=100", "invariance.subset=50", "invariance.passes=1")
    report = sweeps.bench_sweeps(tmp_path, env, epochs=1, dataset="shapes", single_datasets=("shapes",),
                                overrides=small)
    for name in ("sequential", "sequential_training_only", "parallel_2x1"):
        sweep = report[name]
        assert sweep["jobs"] == 8 and sweep["peak_rss_mb"] > 50
        # the process does more than its jobs, and each job more than its training
        assert sweep["sum_train_time_s"] < sweep["sum_job_time_s"]
        assert sweep["wall_over_job_time"] > (0.4 if name == "parallel_2x1" else 1.0)
        assert sweep["wall_over_train_time"] > sweep["wall_over_job_time"]
        assert sweep["jobs_per_hour"] == pytest.approx(3600 * 8 / sweep["wall_s"])
        phases = sweep["sum_phase_s"]
        assert sum(phases.values()) == pytest.approx(sweep["sum_job_time_s"], abs=0.1)
        assert phases["training"] == pytest.approx(sweep["sum_train_time_s"], abs=0.1)
        if name == "parallel_2x1":
            assert sweep["outside_jobs_s"] is None
        else:
            assert sweep["outside_jobs_s"] > 0
            assert sweep["outside_jobs_s"] == pytest.approx(sweep["wall_s"] - sweep["sum_job_time_s"])
    assert report["sequential_training_only"]["sum_phase_s"]["probes"] < report["sequential"]["sum_phase_s"]["probes"]
    assert report["sequential"]["probe_share_of_job_time"] > 0 == report["sequential_training_only"]["probe_share_of_job_time"]
    assert report["parallel_2x1"]["torch_threads"] == threads_per_job(2) <= report["sequential"]["torch_threads"]
    kept, system = report["single_shapes"], report["single_shapes_system_allocator"]
    assert kept["keep_freed_memory"] and not system["keep_freed_memory"]
    for job in (kept, system):
        assert job["epoch_time_s"] > 0 and job["page_faults"] > 0 and job["wall_s"] > job["epoch_time_s"]


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.heavy
def test_bench_cases_for_other_architectures(tmp_path, cache_dir):
    require_real("MNIST")
    out = tmp_path / "bench.json"
    code = bench.main(["--arch", "resnet", "vgg", "--data", "mnist", "--models", "strided", "--batch-sizes", "8",
                       "--steps", "1", "--reps", "1", "--workers", "0", "--data-dir", str(SHARED_DATA), "--cache-dir",
                       str(cache_dir), "--json", str(out)])
    assert code == 0
    cases = json.loads(out.read_text())["cases"]
    assert [(c["arch"], c["model"]) for c in cases] == [("resnet", "strided"), ("vgg", "strided")]
    assert all(c["images_per_s"]["project"]["min"] > 0 and c["ratio_vs_limit"] > 0 for c in cases)
    cfg = common.job_config("published", "cifar10", "vgg")
    assert (cfg.model.arch, cfg.model.depth, cfg.model.downsample.type) == ("vgg", 11, "published")


def test_cpu_clock_needs_one_thread_and_no_workers(capsys):
    for args in (["--clock", "cpu"], ["--clock", "cpu", "--threads", "1"], ["--clock", "cpu", "--workers", "0"]):
        with pytest.raises(SystemExit) as exc:
            bench.main(args)
        assert exc.value.code == 2
        assert "--clock cpu needs --threads 1 --workers 0" in capsys.readouterr().err


def test_cpu_clock_counts_this_process_cpu_time_not_the_wall(monkeypatch):
    """--clock cpu times each run by time.process_time: a run that sleeps (waits, as when another process has
    the core) costs no CPU time, so its rate stays that of the work it did."""
    import time

    assert common.CLOCKS == {"wall": time.perf_counter, "cpu": time.process_time}

    def waits() -> int:
        sum(range(1000))  # a little CPU time, so that the CPU clock's interval is never 0
        time.sleep(0.05)
        return 1

    wall, _ = common.interleaved({"w": waits}, 2, torch.device("cpu"), warm_up=False)
    cpu, _ = common.interleaved({"w": waits}, 2, torch.device("cpu"), warm_up=False, clock=time.process_time)
    assert all(rate < 25 for rate in wall["w"]) and all(rate > 100 for rate in cpu["w"])

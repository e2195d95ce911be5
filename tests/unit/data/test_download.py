"""dataset.download=auto|true|false: use the files, else download when the server answers, else one message."""

import os
import time

import pytest

from helpers import ROOT, trainpy
from helpers.datafiles import make_idx_dataset
from poolstudy.data import catalogue, download, load_raw
from poolstudy.errors import DataError


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    catalogue._MEMORY.clear()
    yield
    catalogue._MEMORY.clear()


def online() -> bool:
    return download.network_answers(download.server_urls("MNIST")[0])[0]


def fake_torchvision_download(calls):
    """Stands in for torchvision's download: writes the files where torchvision would put them."""

    def fetch(tv_class, root):
        calls.append((tv_class, root))
        make_idx_dataset(root, folder=tv_class)

    return fetch


@pytest.mark.parametrize("value,expected", [("auto", "auto"), (True, True), (False, False), ("true", True),
                                            ("False", False), (None, False)])
def test_download_setting_values(value, expected):
    assert download.download_setting(value) == expected


def test_download_setting_refuses_other_values():
    with pytest.raises(DataError, match=r"dataset.download = 'yes' is not valid: it must be true, false or auto"):
        download.download_setting("yes")


def test_files_present_are_used_without_probing(tmp_path, monkeypatch):
    make_idx_dataset(tmp_path / "data")
    monkeypatch.setattr(download, "network_answers", lambda *a, **k: pytest.fail("probed the network"))
    assert load_raw("mnist", tmp_path / "data", tmp_path / "cache", download="auto").train_x.shape[0] == 200


@pytest.mark.parametrize("setting", ["auto", True])
def test_missing_files_are_downloaded_into_the_cache_when_the_server_answers(tmp_path, monkeypatch, setting):
    calls = []
    probed = []
    monkeypatch.setattr(download, "network_answers", lambda url, timeout=3.0: probed.append(url) or (True, ""))
    monkeypatch.setattr(download, "fetch_with_torchvision", fake_torchvision_download(calls))
    raw = load_raw("fashion_mnist", tmp_path / "empty", tmp_path / "cache", download=setting)
    assert calls == [("FashionMNIST", tmp_path / "cache" / "download")]
    assert probed == download.server_urls("FashionMNIST")[:1]  # the first answer decides
    assert raw.source == f"Fashion-MNIST IDX files in {tmp_path / 'cache' / 'download' / 'FashionMNIST' / 'raw'}"
    catalogue._MEMORY.clear()
    monkeypatch.setattr(download, "network_answers", lambda *a, **k: pytest.fail("probed again"))
    assert load_raw("fashion_mnist", tmp_path / "empty", tmp_path / "cache", download=setting).classes == raw.classes


def test_no_answer_gives_the_message_with_every_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "network_answers", lambda url, timeout=3.0: (False, "no answer within 3 s"))
    monkeypatch.setattr(download, "fetch_with_torchvision", lambda *a: pytest.fail("tried to download"))
    with pytest.raises(DataError) as err:
        load_raw("cifar10", tmp_path / "empty", tmp_path / "cache", download="auto")
    msg = str(err.value)
    assert msg.startswith(f"CIFAR-10 not found in {tmp_path / 'empty'}")
    assert "It was not downloaded: dataset.download=auto and the download server www.cs.toronto.edu did not answer " \
           "(no answer within 3 s)." in msg
    assert "dataset.download=true" in msg and str(tmp_path / "cache" / "download") in msg and "dataset=shapes" in msg
    with pytest.raises(DataError, match=r"dataset.download=true but the download server www.cs.toronto.edu did not "
                                        r"answer \(no answer within 3 s\).*dataset=shapes"):
        load_raw("cifar10", tmp_path / "empty", tmp_path / "cache", download=True)


def test_download_false_never_touches_the_network(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "network_answers", lambda *a, **k: pytest.fail("probed the network"))
    with pytest.raises(DataError, match="It was not downloaded: dataset.download=false"):
        load_raw("mnist", tmp_path / "empty", tmp_path / "cache", download=False)


def test_the_probe_has_a_hard_deadline(monkeypatch):
    import threading
    import urllib.request

    release = threading.Event()

    def hangs(*a, **k):  # a DNS lookup that ignores the socket timeout
        release.wait(10)
        raise OSError("released")

    monkeypatch.setattr(urllib.request, "urlopen", hangs)
    start = time.perf_counter()
    ok, why = download.network_answers("https://example.invalid/", timeout=0.2)
    release.set()
    assert (ok, why) == (False, "no answer within 0.2 s") and time.perf_counter() - start < 2


def test_an_http_error_status_counts_as_an_answer(monkeypatch):
    import urllib.error
    import urllib.request

    def forbidden(*a, **k):
        raise urllib.error.HTTPError("https://x/", 403, "Forbidden", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    assert download.network_answers("https://x/") == (True, "")


def test_offline_probe_for_real():
    """This machine has no network: the real probe must say so, and quickly."""
    start = time.perf_counter()
    ok, why = download.network_answers(download.server_urls("MNIST")[0])
    if ok:
        pytest.skip("the download server answers from this machine; the offline path cannot be exercised here")
    assert why and time.perf_counter() - start < download.PROBE_TIMEOUT_S + 1


@pytest.mark.slow
def test_default_command_on_a_fresh_clone_stops_quickly_with_the_offline_choice(tmp_path):
    """The README's first command, no data and no network: one message within seconds; its offline fix runs."""
    if online():
        pytest.skip("the download server answers from this machine: `python train.py` would download MNIST")
    env = {**os.environ, "POOLSTUDY_DATA": str(tmp_path / "data"), "POOLSTUDY_CACHE": str(tmp_path / "cache")}
    env.pop("HYDRA_FULL_ERROR", None)
    start = time.perf_counter()
    proc = trainpy.run([f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env, timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    msg = proc.stderr.strip()
    assert msg.startswith("error: MNIST not found: expected the four IDX files")
    assert "dataset.download=auto and none of the download servers answered (ossci-datasets.s3.amazonaws.com: " in msg
    assert "dataset=shapes" in msg and "dataset.download=true" in msg
    assert elapsed < 30, f"{elapsed:.1f} s"  # interpreter start-up + composition + a probe bounded at 3 s
    fix = trainpy.run(["dataset=shapes", "trainer.epochs=1", "dataset.train_subset=200", "invariance.enabled=false",
                       "trainer.progress=false", f"hydra.run.dir={tmp_path / 'run-shapes'}"], cwd=ROOT, env=env,
                      timeout=300)
    assert fix.returncode == 0 and (tmp_path / "run-shapes" / "metrics.json").is_file(), fix.stderr[-2000:]


def test_every_mirror_is_probed_before_giving_up(monkeypatch, tmp_path):
    probed = []
    monkeypatch.setattr(download, "network_answers",
                        lambda url, timeout=3.0: probed.append(url) or (False, "refused"))
    assert download.should_download("auto", "MNIST") == (
        False, "dataset.download=auto and none of the download servers answered "
               "(ossci-datasets.s3.amazonaws.com: refused; yann.lecun.com: refused)")
    assert probed == download.server_urls("MNIST") and len(probed) == 2
    monkeypatch.setattr(download, "network_answers", lambda url, timeout=3.0: ("lecun" in url, "refused"))
    assert download.should_download("auto", "MNIST") == (True, "")

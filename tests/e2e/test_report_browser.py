"""report.html in a real headless browser (Debian's chromium): it renders offline, fetches nothing, and every
figure shows (a screenshot). Skipped without chromium, failed instead where POOLSTUDY_REQUIRE_CHROMIUM=1 (CI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT

STUDY = ROOT / "docs" / "studies" / "seed_replication"
# Chromium without any network of its own: no background services, and every host name unresolvable, so
# nothing can leave the machine whatever the browser tries; a fresh profile per run.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                  "--disable-domain-reliability", "--no-pings", "--disable-breakpad", "--hide-scrollbars",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--force-device-scale-factor=1"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The collector's output for the committed seed-replication study (2 datasets, 2 variants, 5 seeds)."""
    from poolstudy import collect

    out = tmp_path_factory.mktemp("report")
    assert collect.main([str(STUDY), "--out", str(out), "--quiet"]) == 0
    return out


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
    if os.environ.get("POOLSTUDY_REQUIRE_CHROMIUM") == "1":
        pytest.fail(message)
    pytest.skip(message)


PROBE = """<script>
window.addEventListener('securitypolicyviolation', function (e) { (window.violations = window.violations || []).push(e.blockedURI); });
window.addEventListener('load', function () {
  var out = {height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth,
             resources: performance.getEntriesByType('resource').map(function (r) { return r.name; }),
             violations: window.violations || [], figures: []};
  document.querySelectorAll('figure img').forEach(function (img) {
    var r = img.getBoundingClientRect();
    out.figures.push({id: img.parentElement.id, complete: img.complete, naturalWidth: img.naturalWidth,
                      naturalHeight: img.naturalHeight, x: r.left + window.scrollX, y: r.top + window.scrollY,
                      w: r.width, h: r.height});
  });
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _run_chromium(chromium: str, tmp: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{name}"
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium_offline_with_every_figure_visible(report, tmp_path):
    from PIL import Image

    chromium = _chromium()
    page = report / "report.html"
    # 1. layout: the same page with a probe script added (the report itself allows no script)
    text = page.read_text()
    probed = tmp_path / "probe.html"
    probed.write_text(text.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
                      .replace("</body>", PROBE + "</body>"))
    proc = _run_chromium(chromium, tmp_path, "probe", "--window-size=1280,1000", "--virtual-time-budget=10000",
                         "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout)
    assert match, proc.stderr[-2000:]
    layout = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert layout["resources"] == [] and layout["violations"] == []  # the page fetched nothing
    assert layout["width"] <= 1280  # nothing wider than the window
    assert [f["id"] for f in layout["figures"]] == ["fig-accuracy", "fig-learning_curves", "fig-accuracy_vs_compute",
                                                    "fig-accuracy_vs_shift", "fig-ranks"]
    for figure in layout["figures"]:
        assert figure["complete"] and figure["naturalWidth"] > 100 and figure["naturalHeight"] > 100, figure
        assert figure["w"] > 300 and figure["h"] > 100, figure

    # 2. the report itself: a screenshot of the whole page, every request logged
    height = int(layout["height"])
    assert height < 16000
    shot, netlog = tmp_path / "shot.png", tmp_path / "net.json"
    proc = _run_chromium(chromium, tmp_path, "shot", f"--window-size=1280,{height}", f"--screenshot={shot}",
                         f"--log-net-log={netlog}", page.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape[1] == 1280 and image.shape[0] >= height - 1
    assert (image < 200).mean() > 0.01 and image.std() > 10  # not blank
    for figure in layout["figures"]:  # each figure's area shows a drawing, not an empty or broken image
        x, y, w, h = (int(figure[k]) for k in ("x", "y", "w", "h"))
        area = image[y + 2:y + h - 2, x + 2:x + w - 2]
        assert area.size and (area < 128).mean() > 0.005 and area.std() > 15, figure["id"]
    # page-initiated requests (the browser's own ones have no origin as initiator) are for local files only
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [e["params"] for e in log["events"] if e["type"] == start_job and "url" in e.get("params", {})]
    page_requests = [p["url"] for p in starts if p.get("initiator") != "not an origin"]
    assert [u for u in page_requests if not u.startswith(("file:", "data:"))] == []

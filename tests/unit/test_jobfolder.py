"""The job folder's contract (poolstudy.jobfolder): file names, reading and writing, the keys outside a result."""

import json

from poolstudy import jobfolder
from poolstudy.jobs import identity
from poolstudy.results import identity as results_identity


def test_the_collectors_keys_extend_what_a_resumed_job_may_change():
    assert set(jobfolder.RESUME_IGNORES) < set(jobfolder.NOT_RESULT_KEYS)
    for key in jobfolder.RESUME_IGNORES:  # one list, read by the job and by the collector
        assert identity.ignored(key) and not results_identity.result_key(key)
    for key in ("trainer.eval_batch_size", "trainer.channels_last", "hpo.role", "hydra.run.dir"):
        assert not identity.ignored(key) and not results_identity.result_key(key)
    assert jobfolder.under("checkpoint.keep", jobfolder.RESUME_IGNORES)
    assert not jobfolder.under("checkpointing", jobfolder.RESUME_IGNORES)


def test_reading_says_why_a_file_cannot_be_used(tmp_path):
    assert jobfolder.read_json(tmp_path / "none.json") == (None, "does not exist")
    (tmp_path / "bad.json").write_text('{"status": "comp')
    content, why = jobfolder.read_json(tmp_path / "bad.json")
    assert content is None and why.startswith("is not valid JSON") and "truncated or damaged" in why
    (tmp_path / jobfolder.METRICS_FILE).write_text("[1, 2]")
    assert jobfolder.read_record(tmp_path / jobfolder.METRICS_FILE) is None
    assert jobfolder.finished_metrics(tmp_path) is None


def test_written_records_are_read_back(tmp_path):
    jobfolder.write_metrics(tmp_path, {"status": "complete", "val_acc": 0.5})
    jobfolder.write_status(tmp_path / "job", {"status": "failed", "error": "x"})
    assert jobfolder.finished_metrics(tmp_path) == {"status": "complete", "val_acc": 0.5}
    assert jobfolder.read_status(tmp_path / "job") == {"status": "failed", "error": "x"}
    assert json.loads((tmp_path / "metrics.json").read_text())["val_acc"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job", "metrics.json"]  # no temporary file left
    jobfolder.write_metrics(tmp_path, {"status": "running"})
    assert jobfolder.finished_metrics(tmp_path) is None

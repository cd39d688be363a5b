"""Reading replicas' build and server logs back from their files, without processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import InvalidParameter, Unauthenticated
from services.scaler.replica_logs import ReplicaLogs, mark_ready, read_replica_logs

KEY = "0123abcd"


def _replica(key_dir: Path, replica_id: str, build: str, served: str | None = None) -> None:
    key_dir.mkdir(parents=True, exist_ok=True)
    log_path = key_dir / f"{replica_id}.log"
    log_path.write_text(build)
    if served is not None:
        mark_ready(log_path)
        with open(log_path, "a") as f:
            f.write(served)


def test_build_log_ends_where_the_replica_became_ready(tmp_path):
    _replica(tmp_path, "r-1", "env\ndownload\nloaded\n", "prediction failed\n")
    assert read_replica_logs(tmp_path, ["r-1"], build=True, max_bytes=1000) == "env\ndownload\nloaded\n"
    assert read_replica_logs(tmp_path, ["r-1"], build=False, max_bytes=1000) == "prediction failed\n"


def test_a_replica_that_never_got_ready_has_only_a_build_log(tmp_path):
    _replica(tmp_path, "r-1", "old\n", "")
    _replica(tmp_path, "r-2", "env\nRESOURCE_DOES_NOT_EXIST: no model\n")  # failed, no longer running
    assert "no model" in read_replica_logs(tmp_path, [], build=True, max_bytes=1000)
    assert read_replica_logs(tmp_path, [], build=False, max_bytes=1000) == ""


def test_server_logs_of_every_running_replica_under_a_header(tmp_path):
    _replica(tmp_path, "r-1", "b\n", "one\n")
    _replica(tmp_path, "r-2", "b\n", "two\n")
    _replica(tmp_path, "r-3", "b\n", "retired\n")
    text = read_replica_logs(tmp_path, ["r-1", "r-2"], build=False, max_bytes=1000)
    assert text == "--- replica r-1 ---\none\n--- replica r-2 ---\ntwo\n"


def test_only_the_newest_bytes_are_kept_from_a_line_start(tmp_path):
    _replica(tmp_path, "r-1", "", "".join(f"line {i}\n" for i in range(100)))
    text = read_replica_logs(tmp_path, ["r-1"], build=False, max_bytes=30)
    assert text.endswith("line 99\n") and text.startswith("line ") and len(text) <= 30


def test_a_per_model_environment_build_comes_first(tmp_path):
    (tmp_path / "build.log").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "build.log").write_text("$ pip install tabulate==0.8.10\nSuccessfully installed\n")
    assert read_replica_logs(tmp_path, [], build=True, max_bytes=1000).startswith("$ pip install")  # no replica yet
    _replica(tmp_path, "r-1", "env\nloaded\n", "served\n")
    assert read_replica_logs(tmp_path, ["r-1"], build=True, max_bytes=1000) == (
        "$ pip install tabulate==0.8.10\nSuccessfully installed\nenv\nloaded\n")
    assert read_replica_logs(tmp_path, ["r-1"], build=False, max_bytes=1000) == "served\n"  # not a replica


def test_no_files_no_logs(tmp_path):
    assert read_replica_logs(tmp_path / "missing", [], build=True, max_bytes=10) == ""


async def test_deployment_keys_cannot_leave_the_logs_directory(tmp_path):
    _replica(tmp_path / KEY, f"{KEY}-1", "built\n", "served\n")
    logs = ReplicaLogs(tmp_path, lambda key: [f"{KEY}-1"], internal_token="internal")
    assert await logs.read("internal", KEY, build=False) == "served\n"
    for bad in ("../etc", "..", "", "ABC/../x"):
        with pytest.raises(InvalidParameter):
            await logs.read("internal", bad, build=True)


async def test_only_podiums_control_plane_reads_logs(tmp_path):
    _replica(tmp_path / KEY, f"{KEY}-1", "built\n", "served\n")
    for expected, token in (("internal", "other"), ("internal", ""), ("", "")):
        with pytest.raises(Unauthenticated):
            await ReplicaLogs(tmp_path, lambda key: [f"{KEY}-1"], internal_token=expected).read(token, KEY, build=True)

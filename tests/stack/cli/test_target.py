"""Where the CLI finds its host and token: flags, profile, env vars, podium.json, the DEFAULT profile."""

from __future__ import annotations

import json

import pytest

from podium.cli.target import TargetError, normalize_host, resolve_target
from tests.support.cli import podium


@pytest.fixture
def home(tmp_path):
    (tmp_path / ".databrickscfg").write_text(
        "[DEFAULT]\nhost = http://default:1\ntoken = default-token\n\n"
        "[staging]\nhost = http://staging:2\ntoken = staging-token\n\n[hostonly]\nhost = staging:3\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "podium.json").write_text(json.dumps({"router_url": "http://127.0.0.1:9", "admin_token": "json-token"}))
    return tmp_path


def _env(home, **extra):
    return {"HOME": str(home), "PODIUM_DATA_DIR": str(home / "data"), "PODIUM_CONFIG_FILE": str(home / ".databrickscfg"), **extra}


@pytest.mark.parametrize("kwargs, extra_env, host, token", [
    pytest.param({"host": "http://flag:1", "token": "flag-token"}, {"PODIUM_HOST": "http://env:1"}, "http://flag:1",
                 "flag-token", id="flags win"),
    pytest.param({"profile": "staging"}, {"PODIUM_HOST": "http://env:1", "PODIUM_TOKEN": "t"}, "http://staging:2",
                 "staging-token", id="a named profile beats the environment"),
    pytest.param({}, {"DATABRICKS_CONFIG_PROFILE": "staging"}, "http://staging:2", "staging-token",
                 id="DATABRICKS_CONFIG_PROFILE names the profile"),
    pytest.param({}, {"PODIUM_HOST": "http://env:1", "DATABRICKS_HOST": "http://dbx:1"}, "http://env:1", "json-token",
                 id="PODIUM_HOST before DATABRICKS_HOST; the token still from podium.json"),
    pytest.param({}, {"DATABRICKS_HOST": "https://dbx:1/", "DATABRICKS_TOKEN": "dapi1"}, "https://dbx:1", "dapi1",
                 id="DATABRICKS_HOST and DATABRICKS_TOKEN accepted"),
    pytest.param({}, {}, "http://127.0.0.1:9", "json-token", id="podium.json of the local stack"),
    pytest.param({}, {"PODIUM_TOKEN": "env-token"}, "http://127.0.0.1:9", "env-token",
                 id="an env token with the local stack's host"),
    pytest.param({"profile": "hostonly"}, {}, "http://staging:3", "default-token",
                 id="a profile inherits [DEFAULT]'s token, as the Databricks SDK reads it"),
])
def test_resolution_order(home, kwargs, extra_env, host, token):
    target = resolve_target(_env(home, **extra_env), **kwargs)
    assert (target.host, target.token) == (host, token)


def test_default_profile_is_the_last_resort(home):
    (home / "data" / "podium.json").unlink()
    target = resolve_target(_env(home))
    assert (target.host, target.token) == ("http://default:1", "default-token")
    assert "[DEFAULT]" in target.host_source


def test_unknown_profile_and_no_target_are_clear_errors(home, tmp_path):
    with pytest.raises(TargetError, match="profile 'nope' is not in"):
        resolve_target(_env(home), profile="nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TargetError, match="podium up"):
        resolve_target({"HOME": str(empty), "PODIUM_DATA_DIR": str(empty), "PODIUM_CONFIG_FILE": str(empty / "none")})


@pytest.mark.parametrize("raw, want", [("127.0.0.1:8080", "http://127.0.0.1:8080"), ("http://h:1/", "http://h:1"),
                                       ("https://h/prefix/", "https://h/prefix")])
def test_normalize_host(raw, want):
    assert normalize_host(raw) == want


def test_no_target_exits_9_with_the_reason(tmp_path):
    result = podium("endpoints", "list", home=tmp_path, data_dir=tmp_path / "nowhere")
    assert result.returncode == 9
    assert "NO_TARGET" in result.stderr and "podium up" in result.stderr
    assert result.stdout == ""


def test_unreachable_server_exits_9(tmp_path):
    result = podium("endpoints", "list", "--json", "--host", "127.0.0.1:9", home=tmp_path)
    assert result.returncode == 9
    error = json.loads(result.stderr.strip().splitlines()[-1])
    assert error["error_code"] == "UNREACHABLE" and "127.0.0.1:9" in error["message"]


def test_usage_errors_exit_2(tmp_path):
    assert podium("endpoints", home=tmp_path).returncode == 2          # no action
    bad = podium("endpoints", "create", "{not json", "--host", "127.0.0.1:9", home=tmp_path)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    missing = podium("endpoints", "create", str(tmp_path / "absent.json"), "--host", "127.0.0.1:9", home=tmp_path)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    listed = podium("endpoints", "create", "[1, 2]", "--host", "127.0.0.1:9", home=tmp_path)
    assert listed.returncode == 2 and "JSON object" in listed.stderr

"""What the CLI prints and decides from an endpoint's JSON, without a server."""

from __future__ import annotations

import pytest

from podium.cli import exits
from podium.cli.endpoints import failure_reason, load_spec, progress_line, replicas_label
from podium.cli.logs import pick_served_model
from podium.cli.output import print_table


def _entity(name, deployment, message=""):
    return {"name": name, "entity_name": "m", "entity_version": "1",
            "state": {"deployment": deployment, "deployment_state_message": message}}


def test_progress_line_names_each_served_entity():
    endpoint = {"state": {"ready": "READY", "config_update": "IN_PROGRESS"},
                "config": {"served_entities": [_entity("a-1", "DEPLOYMENT_READY", "1 replica ready")]},
                "pending_config": {"served_entities": [_entity("a-2", "DEPLOYMENT_CREATING", "starting replicas"),
                                                       _entity("b-1", "DEPLOYMENT_READY")]}}
    assert progress_line(endpoint) == ("IN_PROGRESS, READY | a-2: DEPLOYMENT_CREATING (starting replicas) | "
                                       "b-1: DEPLOYMENT_READY")


@pytest.mark.parametrize("entities, want", [
    ([_entity("a", "DEPLOYMENT_FAILED", "model not found"), _entity("b", "DEPLOYMENT_ABORTED", "aborted")],
     "a: model not found"),
    ([_entity("a", "DEPLOYMENT_ABORTED", "another entity failed")], "a: another entity failed"),
    ([_entity("a", "DEPLOYMENT_ABORTED")], "the server gave no reason"),
])
def test_failure_reason_prefers_the_failed_entities(entities, want):
    assert failure_reason({"pending_config": {"served_entities": entities}}) == want


@pytest.mark.parametrize("endpoint, want", [
    ({"name": "e", "config": {"served_entities": [{"name": "only"}]}}, "only"),
    ({"name": "e", "config": {"served_entities": [{"name": "old"}]}, "pending_config": {"served_entities": [{"name": "new"}]}},
     "new"),
])
def test_pick_served_model(endpoint, want):
    assert pick_served_model(endpoint) == want


def test_pick_served_model_refuses_to_guess():
    with pytest.raises(exits.UsageError, match="serves a, b: name one"):
        pick_served_model({"name": "e", "config": {"served_entities": [{"name": "a"}, {"name": "b"}]}})


def test_load_spec_reads_inline_files_and_at_paths(tmp_path):
    (tmp_path / "s.json").write_text('{"name": "x"}')
    assert load_spec('{"name": "x"}') == load_spec(str(tmp_path / "s.json")) == load_spec(f"@{tmp_path / 's.json'}")


def test_table_aligns_columns(capsys):
    print_table(["NAME", "STATE"], [["a-long-name", "READY"], ["b", None]])
    assert capsys.readouterr().out.splitlines() == ["NAME         STATE", "a-long-name  READY", "b"]


@pytest.mark.parametrize("state, want", [
    ({"deployment": "DEPLOYMENT_READY", "desired_replicas": 3, "ready_replicas": 2, "starting_replicas": 1}, "2/3+1"),
    ({"deployment": "DEPLOYMENT_READY", "desired_replicas": 0, "ready_replicas": 0, "starting_replicas": 0}, "0/0"),
    ({"deployment": "DEPLOYMENT_CREATING"}, ""),
])
def test_replicas_label_shows_ready_of_desired_and_starting(state, want):
    assert replicas_label(state) == want

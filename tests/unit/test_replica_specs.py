"""The Docker and Kubernetes backends' pure parts: what a replica looks like to the engine or the cluster,
and how a restarted scaler recognises its own replicas by their labels."""

from __future__ import annotations

import pytest

from services.scaler.replica_specs import (
    LABEL_KEY, LABEL_MANAGED, LABEL_REPLICA, ContainerOptions, KubernetesOptions, container_spec, k8s_deployment,
    k8s_name, k8s_pod_address, k8s_service, metrics_address, replica_address, replica_from_labels, worker_environment,
)
from services.worker.settings import WorkerSettings

OPTIONS = ContainerOptions("podium:latest", "podium-workers", "stack-a", 8500, "workers.podium.internal",
                           ("stack-a-worker-tls:/var/lib/podium/worker-tls:ro",))
KEY = "0123456789abcdef0123"
RID = f"{KEY}-1764000000000-0001"


def test_worker_environment_binds_every_interface_and_has_no_supervisor():
    env = worker_environment({"PODIUM_WORKER_SUPERVISOR_PID": "42", "PODIUM_REGISTRY_URI": "http://mlflow:5000"},
                             {"MY_VAR": "1"}, "models:/iris/1", 8500, gpu_count=0)
    settings = WorkerSettings(_env_file=None, **{k.removeprefix("PODIUM_").lower(): v for k, v in env.items()
                                                  if k.startswith("PODIUM_WORKER_")})
    assert (settings.worker_host, settings.worker_port, settings.worker_supervisor_pid, settings.worker_device) == \
        ("0.0.0.0", 8500, 0, "cpu")
    assert (settings.worker_metrics_host, settings.worker_metrics_port) == ("0.0.0.0", 8501)
    assert metrics_address(f"{RID}.workers.podium.internal:8500") == f"{RID}.workers.podium.internal:8501"
    assert env["MY_VAR"] == "1" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert "CUDA_VISIBLE_DEVICES" not in worker_environment({}, {}, "models:/llm/1", 8500, gpu_count=1)


def test_container_spec_carries_labels_alias_volumes():
    spec = container_spec(RID, KEY, "models:/iris/1", {"A": "b"}, 0, OPTIONS)
    assert spec["labels"][LABEL_MANAGED] == "stack-a" and spec["labels"][LABEL_KEY] == KEY
    assert spec["labels"][LABEL_REPLICA] == RID
    assert spec["network"] == "podium-workers" and spec["aliases"] == [f"{RID}.workers.podium.internal"]
    assert spec["volumes"] == {"stack-a-worker-tls": {"bind": "/var/lib/podium/worker-tls", "mode": "ro"}}
    assert spec["command"] == ["python", "-m", "services.worker.sandbox"] and spec["environment"] == {"A": "b"}
    assert spec["name"] == f"stack-a-worker-{RID}" and "device_requests" not in spec
    assert container_spec(RID, KEY, "m", {}, 2, OPTIONS)["device_requests"][0]["Count"] == 2
    # the address the routers dial is the alias: one wildcard certificate names every replica
    assert replica_address(RID, OPTIONS) == f"{RID}.workers.podium.internal:8500"


@pytest.mark.parametrize("labels, adopted", [
    pytest.param({LABEL_MANAGED: "stack-a", LABEL_KEY: KEY, LABEL_REPLICA: RID}, (RID, KEY), id="ours"),
    pytest.param({LABEL_MANAGED: "stack-b", LABEL_KEY: KEY, LABEL_REPLICA: RID}, None, id="another stack's"),
    pytest.param({LABEL_MANAGED: "stack-a", LABEL_KEY: KEY}, None, id="no replica id"),
    pytest.param({}, None, id="not Podium's"),
])
def test_adoption_by_labels(labels, adopted):
    found = replica_from_labels(labels, OPTIONS)
    assert (found and (found.replica_id, found.key)) == (adopted if adopted else None)


def test_adoption_round_trips_the_spec():
    spec = container_spec(RID, KEY, "models:/iris/1", {}, 0, OPTIONS)
    found = replica_from_labels(spec["labels"], OPTIONS)
    assert (found.replica_id, found.key, found.address) == (RID, KEY, replica_address(RID, OPTIONS))


K8S = KubernetesOptions("podium:latest", "serving", "podium", 8500, "cluster.local",
                        ("podium-worker-tls:/var/lib/podium/worker-tls",))


def test_k8s_deployment_and_service_select_the_same_pods():
    deployment = k8s_deployment(KEY, "models:/iris/1", {"B": "2", "A": "1"}, 0, 3, K8S)
    service = k8s_service(KEY, K8S)
    template = deployment["spec"]["template"]
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == k8s_name(KEY, K8S)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"]["matchLabels"] == template["metadata"]["labels"] == service["spec"]["selector"]
    container = template["spec"]["containers"][0]
    assert [e["name"] for e in container["env"]] == ["A", "B"]
    assert service["spec"]["ports"][0]["targetPort"] in [p["name"] for p in container["ports"]]
    assert container["volumeMounts"][1]["mountPath"] == "/var/lib/podium/worker-tls"
    assert template["spec"]["volumes"][1]["secret"]["secretName"] == "podium-worker-tls"
    assert "resources" not in container
    gpu = k8s_deployment(KEY, "models:/llm/1", {}, 2, 1, K8S)["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert len(k8s_name(KEY, K8S)) <= 63   # a DNS label


def test_k8s_pod_address_is_the_pod_dns_name():
    assert k8s_pod_address("10.1.2.3", K8S) == "10-1-2-3.serving.pod.cluster.local:8500"

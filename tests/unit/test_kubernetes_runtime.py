"""The Kubernetes backend against a real cluster: a Deployment and a Service per served entity, scaled by
start/stop, and adopted by a new runtime (a restarted scaler). Runs where KUBECONFIG names a reachable
cluster; skipped, saying so, everywhere else (no API server can be had on Podium's CI machine)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

pytestmark = pytest.mark.kubernetes


@pytest.fixture
def cluster_namespace():
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("no Kubernetes cluster: KUBECONFIG is not set")
    kubernetes = pytest.importorskip("kubernetes")
    try:
        kubernetes.config.load_kube_config()
        core = kubernetes.client.CoreV1Api()
        namespace = f"podium-test-{uuid.uuid4().hex[:8]}"
        core.create_namespace({"metadata": {"name": namespace}}, _request_timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster means: no cluster here
        pytest.skip(f"the cluster KUBECONFIG names cannot be reached: {exc}")
    yield namespace
    core.delete_namespace(namespace, _request_timeout=30)


async def test_deployment_per_entity_scaled_and_adopted(cluster_namespace):
    from kubernetes import client

    from services.scaler.kubernetes_runtime import KubernetesRuntime
    from services.scaler.replica_specs import KubernetesOptions, k8s_name
    from services.scaler.runtime import WorkerSpec

    options = KubernetesOptions(os.environ.get("PODIUM_TEST_WORKER_IMAGE", "podium:latest"), cluster_namespace)
    spec = WorkerSpec("0123456789abcdef0123", "models:/iris/1", {})
    runtime = KubernetesRuntime(options, {}, heartbeat_interval_s=0.5)
    try:
        await runtime.start(spec)
        await runtime.start(spec)
        apps = client.AppsV1Api()
        deployment = await asyncio.to_thread(apps.read_namespaced_deployment, k8s_name(spec.key, options),
                                             cluster_namespace)
        assert deployment.spec.replicas == 2
        service = await asyncio.to_thread(client.CoreV1Api().read_namespaced_service, k8s_name(spec.key, options),
                                          cluster_namespace)
        assert service.spec.selector == deployment.spec.selector.match_labels
        for _ in range(120):   # pods appear (they need not become ready: the image may not exist there)
            if len([r for r in runtime.replicas() if not r.replica_id.startswith("pending")]) == 2:
                break
            await asyncio.sleep(0.5)
        pods = [r for r in runtime.replicas() if not r.replica_id.startswith("pending")]
        assert len(pods) == 2
        await runtime.stop(pods[0].replica_id, grace_s=1)
        deployment = await asyncio.to_thread(apps.read_namespaced_deployment, k8s_name(spec.key, options),
                                             cluster_namespace)
        assert deployment.spec.replicas == 1
    finally:
        await runtime.close()
    successor = KubernetesRuntime(options, {}, heartbeat_interval_s=0.5)
    try:
        adopted = await successor.adopt()
        assert {r.key for r in adopted} == {spec.key}
    finally:
        await successor.close()

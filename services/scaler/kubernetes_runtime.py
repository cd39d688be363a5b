"""Worker replicas as pods: a Deployment and a Service per served entity (`kubernetes` package, extra
[kubernetes]), in-cluster config or KUBECONFIG.

The scaler thinks in replicas; Kubernetes in a Deployment's `replicas`. `start` raises the count by one
(creating the Deployment and Service the first time) and shows a STARTING placeholder until a new pod
appears; `stop` marks the pod cheapest to delete (pod-deletion-cost) and lowers the count, so the
ReplicaSet removes exactly that pod. Every heartbeat lists the pods by label: they are the replicas, and a
restarted scaler adopts them the same way. READY comes from the scaler's own gRPC health checks (as for
the other backends), addressed by the pod's DNS name (replica_specs.k8s_pod_address).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Callable

from services.common.tls import TlsFiles
from services.scaler.replica_specs import (
    K8S_DELETION_COST, KubernetesOptions, k8s_deployment, k8s_labels, k8s_name, k8s_pod_address, k8s_service,
    metrics_address, worker_environment,
)
from services.scaler.replica import EXITED, FAILED, READY, STARTING, Replica
from services.scaler.replica_grants import ENGINE_REFUSES_SECRETS, has_secret_reference
from services.scaler.replica_table import ReplicaTable
from services.scaler.runtime import WorkerSpec

log = logging.getLogger(__name__)

PLACEHOLDER = "pending"


class KubernetesRuntime:
    def __init__(self, options: KubernetesOptions, base_env: dict[str, str], *, heartbeat_interval_s: float = 1.0,
                 heartbeat_expiry_s: float = 3.0, stop_grace_s: float = 15.0, tls: TlsFiles | None = None,
                 api_timeout_s: float = 30.0):
        from kubernetes import client, config  # the optional extra

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self._apps = client.AppsV1Api()
        self._core = client.CoreV1Api()
        self._options = options
        self._base_env = base_env
        self._timeout_s = api_timeout_s
        self._stop_grace_s = stop_grace_s
        self.on_change: Callable[[], None] = lambda: None
        # Pods by name, and placeholders for pods to come; every heartbeat lists the pods first.
        self._table = ReplicaTable(tls, interval_s=heartbeat_interval_s, expiry_s=heartbeat_expiry_s,
                                   on_change=lambda: self.on_change(), observe=self._observe_pods, what="worker pods")
        self._wanted: dict[str, int] = {}            # deployment key -> replicas asked of Kubernetes
        # Starts and stops of one key read, call the API and write `_wanted`: one at a time, or two
        # concurrent stops would both ask for N-1.
        self._scaling: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._stopped: set[str] = set()   # pods asked to go, until Kubernetes shows them gone: never re-adopted
        self._ids = itertools.count(1)

    # ---- the Runtime interface ----

    async def adopt(self) -> list[Replica]:
        deployments = await asyncio.to_thread(
            self._apps.list_namespaced_deployment, self._options.namespace, _request_timeout=self._timeout_s,
            label_selector=f"app.kubernetes.io/managed-by={self._options.stack}")
        for deployment in deployments.items:
            key = deployment.metadata.labels.get("podium.io/deployment-key")
            if key:
                self._wanted[key] = deployment.spec.replicas or 0
        await self._observe_pods()
        self._table.watch()   # pods of the Deployments found may appear later
        adopted = [r for r in self._table.all() if not r.replica_id.startswith(PLACEHOLDER)]
        for replica in adopted:
            log.info("adopted pod %s of %s", replica.replica_id, replica.key)
        return adopted

    def warm(self, spec: WorkerSpec) -> None:
        """Nothing to prepare: the image holds every import."""

    async def start(self, spec: WorkerSpec) -> Replica:
        placeholder = self._table.add(Replica(f"{PLACEHOLDER}-{spec.key}-{next(self._ids)}", spec.key))
        if has_secret_reference(spec.environment_vars):
            placeholder.status, placeholder.failure = FAILED, ENGINE_REFUSES_SECRETS
            self.on_change()
            return placeholder
        async with self._scaling[spec.key]:
            wanted = self._wanted.get(spec.key, 0) + 1
            try:
                await asyncio.to_thread(self._apply, spec, wanted)
            except Exception as exc:  # noqa: BLE001 - the API's reason, counted as a start failure
                placeholder.status, placeholder.failure = EXITED, f"could not scale the worker Deployment: {exc}"
                self.on_change()
                return placeholder
            self._wanted[spec.key] = wanted
        return placeholder

    async def stop(self, replica_id: str, grace_s: float | None = None) -> None:
        replica = self._table.mark_stopping(replica_id)
        if replica is None:
            return
        async with self._scaling[replica.key]:
            wanted = max(0, self._wanted.get(replica.key, 1) - 1)
            if not replica_id.startswith(PLACEHOLDER):
                self._stopped.add(replica_id)
                await asyncio.to_thread(self._mark_cheapest, replica_id)
            if wanted:
                await asyncio.to_thread(self._scale, replica.key, wanted)
                self._wanted[replica.key] = wanted
            else:
                # The key's last replica: its Deployment and Service go too (a later start creates them
                # again), so retired configs leave nothing behind in the cluster.
                await asyncio.to_thread(self._delete, replica.key)
                self._wanted.pop(replica.key, None)
        self.forget(replica_id)

    def forget(self, replica_id: str) -> None:
        self._table.forget(replica_id)

    def replicas(self) -> list[Replica]:
        return self._table.all()

    async def close(self) -> None:
        """Leaves the pods running: the Deployments are the desired state, and the next scaler adopts them."""
        await self._table.close()

    # ---- API calls (in threads) ----

    def _apply(self, spec: WorkerSpec, replicas: int) -> None:
        from kubernetes.client.exceptions import ApiException

        name, namespace = k8s_name(spec.key, self._options), self._options.namespace
        environment = worker_environment({**self._base_env, **spec.worker_settings()}, spec.environment_vars,
                                         spec.model_uri, self._options.port, spec.gpu_count,
                                         spec.memory_limit_bytes())
        try:
            self._apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}},
                                                         _request_timeout=self._timeout_s)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._apps.create_namespaced_deployment(
                namespace, k8s_deployment(spec.key, spec.model_uri, environment, spec.gpu_count, replicas,
                                          self._options, spec.memory_limit_bytes()), _request_timeout=self._timeout_s)
        try:
            self._core.create_namespaced_service(namespace, k8s_service(spec.key, self._options),
                                                 _request_timeout=self._timeout_s)
        except ApiException as exc:
            if exc.status != 409:   # already there
                raise

    def _scale(self, key: str, replicas: int) -> None:
        self._apps.patch_namespaced_deployment_scale(k8s_name(key, self._options), self._options.namespace,
                                                     {"spec": {"replicas": replicas}}, _request_timeout=self._timeout_s)

    def _delete(self, key: str) -> None:
        from kubernetes.client.exceptions import ApiException

        name, namespace = k8s_name(key, self._options), self._options.namespace
        for delete in (self._apps.delete_namespaced_deployment, self._core.delete_namespaced_service):
            try:
                delete(name, namespace, _request_timeout=self._timeout_s)
            except ApiException as exc:
                if exc.status != 404:   # already gone
                    raise

    def _mark_cheapest(self, pod_name: str) -> None:
        self._core.patch_namespaced_pod(pod_name, self._options.namespace,
                                        {"metadata": {"annotations": {K8S_DELETION_COST: "-1000"}}},
                                        _request_timeout=self._timeout_s)

    def _list_pods(self) -> list:
        selector = ",".join(f"{k}={v}" for k, v in k8s_labels("", self._options).items() if k != "podium.io/deployment-key")
        return self._core.list_namespaced_pod(self._options.namespace, label_selector=selector,
                                              _request_timeout=self._timeout_s).items

    async def _observe_pods(self) -> None:
        """Pods are the replicas: new ones replace placeholders, vanished or failed ones are EXITED."""
        pods = await asyncio.to_thread(self._list_pods)
        seen = set()
        for pod in pods:
            name, key = pod.metadata.name, pod.metadata.labels.get("podium.io/deployment-key", "")
            if pod.metadata.deletion_timestamp is not None or name in self._stopped:
                continue
            seen.add(name)
            replica = self._table.get(name)
            if replica is None:
                replica = self._table.add(Replica(name, key))
                placeholder = next((r for r in self._table.all()
                                    if r.replica_id.startswith(PLACEHOLDER) and r.key == key), None)
                if placeholder is not None:
                    replica.started_at = placeholder.started_at
                    self._table.forget(placeholder.replica_id)
            if pod.status.pod_ip and not replica.address:
                replica.address = k8s_pod_address(pod.status.pod_ip, self._options)
                replica.metrics_address = metrics_address(replica.address)
            if pod.status.phase in ("Failed", "Succeeded") and replica.status in (STARTING, READY):
                replica.status, replica.failure = EXITED, f"pod {pod.status.phase.lower()}: {pod.status.reason or ''}"
                self.on_change()
        self._stopped &= {pod.metadata.name for pod in pods}   # gone from the cluster: forget them
        for replica in self._table.all():
            if not replica.replica_id.startswith(PLACEHOLDER) and replica.replica_id not in seen \
                    and replica.status in (STARTING, READY) and not replica.is_stopping:
                replica.status, replica.failure = EXITED, "pod gone"
                self.on_change()
"""What a worker replica looks like to a container engine or Kubernetes: pure renderers, no I/O.

The Docker and Kubernetes runtimes turn these into API calls; a restarted scaler finds its replicas again
by the labels rendered here (`replica_from_labels`), so the labels are the runtimes' only memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.worker.settings import WorkerSettings

LABEL_MANAGED = "podium.managed-by"      # value: the stack name, so two stacks on one engine never mix
LABEL_KEY = "podium.deployment-key"
LABEL_REPLICA = "podium.replica-id"
LABEL_MODEL = "podium.model-uri-sha256"  # label values are short and restricted; the URI rides in the env
LABEL_PORT = "podium.port"
K8S_ANNOTATION_MODEL = "podium.io/model-uri"
K8S_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


@dataclass(frozen=True)
class ContainerOptions:
    """Where and how the Docker runtime starts worker containers (from the scaler settings)."""

    image: str
    network: str
    stack: str = "podium"
    port: int = 8500
    domain: str = "workers.podium.internal"   # each replica answers as <replica_id>.<domain> on the network
    volumes: tuple[str, ...] = ()             # "name:/path[:ro]", e.g. the TLS volume the workers read


@dataclass(frozen=True)
class AdoptedContainer:
    replica_id: str
    key: str
    address: str


def replica_address(replica_id: str, options: ContainerOptions) -> str:
    """The address the routers dial: a network alias under the workers' domain, so one wildcard
    certificate (*.<domain>) covers every replica."""
    return f"{replica_id}.{options.domain}:{options.port}"


def container_name(replica_id: str, options: ContainerOptions) -> str:
    return f"{options.stack}-worker-{replica_id}"


def metrics_address(address: str) -> str:
    """A container's or pod's Prometheus /metrics: the port after its gRPC port, on the same name."""
    host, port = address.rsplit(":", 1)
    return f"{host}:{int(port) + 1}"


def worker_environment(base_env: dict[str, str], environment_vars: dict[str, str], model_uri: str, port: int,
                       gpu_count: int) -> dict[str, str]:
    """A worker's environment in a container or pod: it binds every interface on fixed ports (gRPC, and
    /metrics on the next one), and no supervisor pid (another pid namespace) ends it: the scaler does."""
    device = {"worker_device": "cuda"} if gpu_count else {"cuda_visible_devices": "", "worker_device": "cpu"}
    return {**base_env, **environment_vars, "PYTHONUNBUFFERED": "1", **WorkerSettings.env_for(
        worker_model_uri=model_uri, worker_host="0.0.0.0", worker_port=port, worker_metrics_host="0.0.0.0",
        worker_metrics_port=port + 1, worker_supervisor_pid=0, **device)}


def container_spec(replica_id: str, key: str, model_uri: str, environment: dict[str, str], gpu_count: int,
                   options: ContainerOptions) -> dict:
    """Keyword arguments for docker's `containers.run` (detached): labels, network alias, volumes, GPUs."""
    labels = {LABEL_MANAGED: options.stack, LABEL_KEY: key, LABEL_REPLICA: replica_id,
              LABEL_MODEL: hashlib.sha256(model_uri.encode()).hexdigest(), LABEL_PORT: str(options.port)}
    volumes = {}
    for volume in options.volumes:
        name, path, *mode = volume.split(":")
        volumes[name] = {"bind": path, "mode": mode[0] if mode else "rw"}
    spec = {
        "image": options.image, "command": ["python", "-m", "services.worker"], "name": container_name(replica_id, options),
        "labels": labels, "environment": environment, "network": options.network, "volumes": volumes,
        "detach": True, "hostname": replica_id,
        # the alias rides on the network endpoint: see DockerRuntime._run (docker-py takes it per network)
        "aliases": [f"{replica_id}.{options.domain}"],
    }
    if gpu_count:
        spec["device_requests"] = [{"Driver": "nvidia", "Count": gpu_count, "Capabilities": [["gpu"]]}]
    return spec


def replica_from_labels(labels: dict[str, str], options: ContainerOptions) -> AdoptedContainer | None:
    """The replica a running container is, when this stack's scaler started it; None for anything else."""
    if labels.get(LABEL_MANAGED) != options.stack or not labels.get(LABEL_KEY) or not labels.get(LABEL_REPLICA):
        return None
    replica_id = labels[LABEL_REPLICA]
    port = int(labels.get(LABEL_PORT) or options.port)
    return AdoptedContainer(replica_id, labels[LABEL_KEY], f"{replica_id}.{options.domain}:{port}")


# ---- Kubernetes: a Deployment and a Service per served entity ----

@dataclass(frozen=True)
class KubernetesOptions:
    image: str
    namespace: str = "podium"
    stack: str = "podium"
    port: int = 8500
    cluster_domain: str = "cluster.local"
    secret_volumes: tuple[str, ...] = ()   # "secret-name:/path": e.g. the workers' TLS certificate
    service_account: str = ""


def k8s_name(key: str, options: KubernetesOptions) -> str:
    """Deployment and Service name of a served entity: a DNS label (the key is 20 hex digits)."""
    return f"{options.stack}-w-{key}"


def k8s_labels(key: str, options: KubernetesOptions) -> dict[str, str]:
    return {"app.kubernetes.io/name": "podium-worker", "app.kubernetes.io/managed-by": options.stack,
            "podium.io/deployment-key": key}


def k8s_pod_address(pod_ip: str, options: KubernetesOptions) -> str:
    """A pod by its DNS name (a-b-c-d.<namespace>.pod.<domain>), so the workers' certificate can name
    *.<namespace>.pod.<domain> instead of addresses nobody knows in advance."""
    return f"{pod_ip.replace('.', '-').replace(':', '-')}.{options.namespace}.pod.{options.cluster_domain}:{options.port}"


def k8s_deployment(key: str, model_uri: str, environment: dict[str, str], gpu_count: int, replicas: int,
                   options: KubernetesOptions) -> dict:
    """The worker Deployment of one served entity (the scaler patches `replicas`)."""
    labels = k8s_labels(key, options)
    container = {
        "name": "worker", "image": options.image, "command": ["python", "-m", "services.worker"],
        "env": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "ports": [{"name": "grpc", "containerPort": options.port}],
        # The worker serves gRPC health on its (mutual-TLS) port: the kubelet can only see that it listens;
        # the scaler's own health checks decide READY.
        "readinessProbe": {"tcpSocket": {"port": options.port}, "periodSeconds": 2},
        "volumeMounts": [],
    }
    volumes = []
    for index, entry in enumerate(options.secret_volumes):
        secret, path = entry.split(":", 1)
        volumes.append({"name": f"secret-{index}", "secret": {"secretName": secret}})
        container["volumeMounts"].append({"name": f"secret-{index}", "mountPath": path, "readOnly": True})
    if gpu_count:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpu_count}}
    pod_spec = {"containers": [container], "volumes": volumes, "terminationGracePeriodSeconds": 30}
    if options.service_account:
        pod_spec["serviceAccountName"] = options.service_account
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": k8s_name(key, options), "namespace": options.namespace, "labels": labels,
                     "annotations": {K8S_ANNOTATION_MODEL: model_uri}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }


def k8s_service(key: str, options: KubernetesOptions) -> dict:
    """The Service in front of one served entity's pods (for people and tools; routers dial pods)."""
    labels = k8s_labels(key, options)
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": k8s_name(key, options), "namespace": options.namespace, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "grpc", "port": options.port, "targetPort": "grpc"}]},
    }

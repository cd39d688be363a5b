"""What a worker replica looks like to a container engine or Kubernetes: pure renderers, no I/O.

The Docker and Kubernetes runtimes turn these into API calls; a restarted scaler finds its replicas again
by the labels rendered here (`replica_from_labels`), so the labels are the runtimes' only memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.common.model_environment import allowed_environment_vars
from services.worker.settings import WorkerSettings

LABEL_MANAGED = "podium.managed-by"      # value: the stack name, so two stacks on one engine never mix
LABEL_KEY = "podium.deployment-key"
LABEL_REPLICA = "podium.replica-id"
LABEL_MODEL = "podium.model-uri-sha256"  # label values are short and restricted; the URI rides in the env
LABEL_PORT = "podium.port"
K8S_ANNOTATION_MODEL = "podium.io/model-uri"
K8S_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
WORKER_COMMAND = ["python", "-m", "services.worker.sandbox"]   # confines the replica, then runs the worker
WORKER_UID = 10001             # containers and pods run the worker as this uid and gid, never root
SCRATCH_MOUNT = "/scratch"     # the only writable place (a tmpfs / emptyDir): the worker's HOME and TMPDIR
SCRATCH_SIZE = "1g"


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
                       gpu_count: int, memory_limit_bytes: int = 0) -> dict[str, str]:
    """A worker's environment in a container or pod: it binds every interface on fixed ports (gRPC, and
    /metrics on the next one), and no supervisor pid (another pid namespace) ends it: the scaler does.
    Podium's variables win over the served entity's, whose names that change how an interpreter starts
    are dropped (refused at create: services/common/model_environment.py)."""
    device = {"worker_device": "cuda"} if gpu_count else {"cuda_visible_devices": "", "worker_device": "cpu"}
    return {**allowed_environment_vars(environment_vars), **base_env, "PYTHONUNBUFFERED": "1",
            **WorkerSettings.env_for(
                worker_model_uri=model_uri, worker_host="0.0.0.0", worker_port=port, worker_metrics_host="0.0.0.0",
                worker_metrics_port=port + 1, worker_supervisor_pid=0, worker_scratch_dir=SCRATCH_MOUNT,
                worker_memory_limit_bytes=memory_limit_bytes, **device)}


def container_spec(replica_id: str, key: str, model_uri: str, environment: dict[str, str], gpu_count: int,
                   options: ContainerOptions, memory_limit_bytes: int = 0) -> dict:
    """Keyword arguments for docker's `containers.run` (detached): labels, network alias, volumes, GPUs,
    and the sandbox: a read-only root filesystem with a tmpfs scratch, a non-root user, no capabilities,
    no privilege gain, bounded memory and processes, volumes (the TLS files) read-only."""
    labels = {LABEL_MANAGED: options.stack, LABEL_KEY: key, LABEL_REPLICA: replica_id,
              LABEL_MODEL: hashlib.sha256(model_uri.encode()).hexdigest(), LABEL_PORT: str(options.port)}
    volumes = {}
    for volume in options.volumes:
        name, path, *mode = volume.split(":")
        volumes[name] = {"bind": path, "mode": "ro"}   # model code writes nowhere but its scratch
    spec = {
        "image": options.image, "command": WORKER_COMMAND, "name": container_name(replica_id, options),
        "labels": labels, "environment": environment, "network": options.network, "volumes": volumes,
        "detach": True, "hostname": replica_id,
        # the alias rides on the network endpoint: see DockerRuntime._run (docker-py takes it per network)
        "aliases": [f"{replica_id}.{options.domain}"],
        "user": f"{WORKER_UID}:{WORKER_UID}", "read_only": True, "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"], "pids_limit": 1024,
        "tmpfs": {SCRATCH_MOUNT: f"rw,nosuid,nodev,size={SCRATCH_SIZE},uid={WORKER_UID},gid={WORKER_UID},mode=0700"},
    }
    if memory_limit_bytes:
        spec["mem_limit"] = memory_limit_bytes
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
                   options: KubernetesOptions, memory_limit_bytes: int = 0) -> dict:
    """The worker Deployment of one served entity (the scaler patches `replicas`); its pods run as a
    non-root user with no capabilities, no privilege gain, a read-only root filesystem and an emptyDir
    scratch, no service-account token, and a memory limit from the workload size."""
    labels = k8s_labels(key, options)
    container = {
        "name": "worker", "image": options.image, "command": WORKER_COMMAND,
        "env": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "ports": [{"name": "grpc", "containerPort": options.port}],
        # The worker serves gRPC health on its (mutual-TLS) port: the kubelet can only see that it listens;
        # the scaler's own health checks decide READY.
        "readinessProbe": {"tcpSocket": {"port": options.port}, "periodSeconds": 2},
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_MOUNT}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": WORKER_UID, "runAsGroup": WORKER_UID,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    volumes = [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": SCRATCH_SIZE.upper() + "i"}}]
    for index, entry in enumerate(options.secret_volumes):
        secret, path = entry.split(":", 1)
        volumes.append({"name": f"secret-{index}", "secret": {"secretName": secret}})
        container["volumeMounts"].append({"name": f"secret-{index}", "mountPath": path, "readOnly": True})
    limits: dict = {}
    if gpu_count:
        limits["nvidia.com/gpu"] = gpu_count
    if memory_limit_bytes:
        limits["memory"] = str(memory_limit_bytes)
    if limits:
        container["resources"] = {"limits": limits}
    pod_spec = {"containers": [container], "volumes": volumes, "terminationGracePeriodSeconds": 30,
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": WORKER_UID, "runAsGroup": WORKER_UID,
                                    "fsGroup": WORKER_UID, "seccompProfile": {"type": "RuntimeDefault"}}}
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

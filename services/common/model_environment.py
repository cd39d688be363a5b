"""Which `environment_vars` names a served entity may set: pure, no I/O.

A replica's interpreter starts with the served entity's `environment_vars` in its environment, before the
sandbox (services/worker/sandbox.py) confines it. Names that change how the interpreter, the dynamic loader
or OpenSSL start would run code, or write files, with the platform's rights before that: those are refused
when the endpoint is created or updated. Podium's own worker settings are refused too: the scaler sets them
for every replica, and its values win over a served entity's anyway (services/scaler/runtime.py).
"""

from __future__ import annotations

# Any name starting with one of these.
REFUSED_PREFIXES = (
    "PYTHON",          # PYTHONPATH, PYTHONSTARTUP, PYTHONWARNINGS (imports a module by name), PYTHONHOME, ...
    "LD_",             # LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT: the dynamic loader maps code from a path
    "PODIUM_WORKER_",  # the worker's own settings, set by the scaler (the sandbox's among them)
)
# These exact names.
REFUSED_NAMES = frozenset({
    "GLIBC_TUNABLES", "GCONV_PATH", "LOCPATH", "NLSPATH", "MALLOC_CHECK_", "MALLOC_PERTURB_",  # glibc at start
    "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "SSLKEYLOGFILE",   # OpenSSL loads modules, writes keys
    "PODIUM_REGISTRY_URI", "PODIUM_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_URI",  # the registry
    "CUDA_VISIBLE_DEVICES",                                                  # the GPUs the scaler placed it on
    "OTEL_EXPORTER_OTLP_ENDPOINT",                                           # where the worker's traces go
})


def environment_var_refusal(name: str) -> str | None:
    """Why a served entity may not set the environment variable `name`; None when it may."""
    upper = name.upper()
    if not name or "=" in name or "\0" in name:
        return "is not a valid environment variable name"
    for prefix in REFUSED_PREFIXES:
        if upper.startswith(prefix):
            return (f"is reserved: {prefix}* variables change how a replica's interpreter starts or are set by "
                    "Podium" if prefix != "PODIUM_WORKER_" else "is reserved: PODIUM_WORKER_* are set by Podium")
    if upper in REFUSED_NAMES:
        return "is reserved: it changes how a replica starts, or Podium sets it"
    return None


def allowed_environment_vars(environment_vars: dict[str, str]) -> dict[str, str]:
    """`environment_vars` without the refused names (a spec stored before they were refused)."""
    return {k: v for k, v in environment_vars.items() if environment_var_refusal(k) is None}

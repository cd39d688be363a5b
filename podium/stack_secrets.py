"""`python -m podium.stack_secrets DIR WORKER_DIR`: the init step of the container stack (deploy/).

What `podium up --tls` makes for one machine, for services that reach each other by DNS name:
- DIR/tls: the CA and the internal, worker and router certificates (podium/certificates.py), naming the
  compose services and every worker replica (*.<worker domain>);
- DIR/keys/master-key.json: the master key (unless PODIUM_MASTER_KEY is set);
- DIR/tokens.env: the internal credential, the router's worker credential (and its SHA-256 for the
  scaler) and the admin token, each minted once unless the environment sets it; deploy/entrypoint.sh
  exports what the environment does not already set;
- WORKER_DIR: the CA and the workers' certificate only: model code in a worker never sees the others.
Existing files are kept, so a restart keeps its credentials and clients keep trusting ca.pem.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
from pathlib import Path

from podium.certificates import ensure_certificates
from services.common.master_keys import ensure_key_file
from services.control_plane import credentials

TOKENS = ("PODIUM_INTERNAL_TOKEN", "PODIUM_WORKER_TOKEN", "PODIUM_BOOTSTRAP_ADMIN_TOKEN")


def _listed(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def ensure_stack_secrets(directory: Path, worker_directory: Path, environ: dict[str, str]) -> dict[str, str]:
    """Writes what is missing; returns the tokens in force (minted or from `environ`)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    domain = environ.get("PODIUM_DOCKER_WORKER_DOMAIN", "workers.podium.internal")
    certificates = ensure_certificates(
        directory / "tls", _listed(environ.get("PODIUM_ROUTER_TLS_HOSTS", "")),
        internal_hosts=_listed(environ.get("PODIUM_INTERNAL_TLS_HOSTS", "")),
        worker_hosts=[f"*.{domain}", *_listed(environ.get("PODIUM_WORKER_TLS_HOSTS", ""))])
    worker_directory.mkdir(parents=True, exist_ok=True)
    for source, name in ((certificates.ca_file, "ca.pem"), (certificates.worker[0], "worker.pem"),
                         (certificates.worker[1], "worker.key")):
        shutil.copyfile(source, worker_directory / name)
    if not environ.get("PODIUM_MASTER_KEY"):
        ensure_key_file(directory / "keys" / "master-key.json")
    tokens_file = directory / "tokens.env"
    stored = {}
    if tokens_file.exists():
        stored = dict(line.split("=", 1) for line in tokens_file.read_text().splitlines() if "=" in line)
    minted = {
        "PODIUM_INTERNAL_TOKEN": secrets.token_hex(32),
        "PODIUM_WORKER_TOKEN": secrets.token_hex(32),
        "PODIUM_BOOTSTRAP_ADMIN_TOKEN": credentials.issue(credentials.PAT_PREFIX).value,
    }
    tokens = {name: environ.get(name) or stored.get(name) or minted[name] for name in TOKENS}
    tokens["PODIUM_WORKER_CALLER_TOKEN_SHA256"] = hashlib.sha256(tokens["PODIUM_WORKER_TOKEN"].encode()).hexdigest()
    fd = os.open(tokens_file.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{name}={value}\n" for name, value in tokens.items()))
    os.replace(tokens_file.with_suffix(".tmp"), tokens_file)
    return tokens


def main() -> None:
    directory, worker_directory = Path(sys.argv[1]), Path(sys.argv[2])
    ensure_stack_secrets(directory, worker_directory, dict(os.environ))
    print(f"stack secrets ready in {directory} (workers: {worker_directory})", flush=True)


if __name__ == "__main__":
    main()

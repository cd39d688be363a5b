"""A Docker engine of the tests' own, and every image deploy/docker-compose.yml names, built here.

No registry can be reached, so nothing is pulled: Debian's docker.io (and docker-compose, debootstrap)
come from apt, `dockerd` runs under CACHE/docker with its own socket and is stopped afterwards, the base
image is a debootstrap'd Debian imported with `docker import`, the stand-ins for the official
postgres/redis/haproxy images are built on it (tests/stack/deploy/standins) and tagged with the names the
compose file uses, and Podium's image is built from deploy/Dockerfile with wheels that pip on this
machine prepared (its own index and CA settings). Each image carries the hash of its inputs as a label:
an unchanged input is never built twice (CACHE persists across runs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("PODIUM_DEPLOY_CACHE", "/var/cache/podium-deploy"))
SOCKET = CACHE / "docker.sock"
BASE = "podium-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates,postgresql-15,redis-server,haproxy"
STANDINS = {"postgres:15-bookworm": "postgres.Dockerfile", "redis:7-bookworm": "redis.Dockerfile",
            "haproxy:2.6-bookworm": "haproxy.Dockerfile"}
PODIUM_IMAGE = "podium:latest"
HASH_LABEL = "podium.input-sha256"
IMAGE_ONLY_REQUIREMENTS = ("async-timeout>=4.0.3",)


class EngineUnavailable(RuntimeError):
    """No Docker engine can run here (not root, no apt, dockerd refuses to start): the tests skip."""


def run(*command: str, timeout_s: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, timeout=timeout_s, **kwargs)


def docker(*args: str, timeout_s: float = 600, capture: bool = True) -> str:
    result = subprocess.run(("docker", *args), env=docker_env(), capture_output=capture, text=True,
                            timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {(result.stderr or '')[-2000:]}")
    return result.stdout or ""


def docker_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}"}


def apt_install(*packages: str) -> None:
    missing = [p for p in packages if shutil.which({"docker.io": "dockerd", "docker-compose": "docker-compose"}.get(p, p))
               is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EngineUnavailable(f"{', '.join(missing)} missing and cannot be installed (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=env, capture_output=True)
    run("apt-get", "install", "-y", "-qq", *missing, env=env, capture_output=True)


class Engine:
    """dockerd with its data under CACHE/docker (images survive between runs); stop() ends it."""

    def __init__(self):
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60) -> None:
        apt_install("docker.io", "docker-compose", "debootstrap")
        CACHE.mkdir(parents=True, exist_ok=True)
        pidfile = CACHE / "dockerd.pid"
        if pidfile.exists():   # a previous run that died: its daemon must go before ours takes the socket
            try:
                pid = int(pidfile.read_text())
                os.kill(pid, signal.SIGTERM)
                for _ in range(60):   # it holds the pidfile and the data root until it is gone
                    os.kill(pid, 0)
                    time.sleep(0.5)
            except (ValueError, ProcessLookupError):
                pass
        SOCKET.unlink(missing_ok=True)
        log = open(CACHE / "dockerd.log", "ab")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(CACHE / "docker"), "--exec-root", str(CACHE / "exec"),
             "--pidfile", str(pidfile), "-H", f"unix://{SOCKET}"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineUnavailable(f"dockerd exited ({self.process.returncode}); see {CACHE / 'dockerd.log'}")
            if SOCKET.exists() and subprocess.run(["docker", "info"], env=docker_env(), capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        self.stop()
        raise EngineUnavailable("dockerd did not answer in time")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _image_hash(tag: str) -> str | None:
    try:
        return docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{HASH_LABEL}"}}}}', tag).strip()
    except RuntimeError:
        return None


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def apt_mirror() -> str:
    """The Debian mirror apt on this machine uses (deb822 sources or sources.list)."""
    candidates = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for path in candidates:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and "security" not in line:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def ensure_base(timings: dict[str, float]) -> None:
    wanted = _digest(BASE_PACKAGES.encode(), b"bookworm minbase")
    if _image_hash(BASE) == wanted:
        return
    started = time.monotonic()
    rootfs = CACHE / "rootfs"
    if rootfs.exists():
        subprocess.run(["umount", "-R", str(rootfs / "proc")], capture_output=True)  # a debootstrap cut short
        shutil.rmtree(rootfs, ignore_errors=True)
    run("debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(rootfs), apt_mirror(),
        capture_output=True, timeout_s=900)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--exclude=./var/cache/apt/archives/*.deb", "-c", "."],
                           stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-c", "ENV LANG=C.UTF-8", "-c", f"LABEL {HASH_LABEL}={wanted}", "-", BASE],
                   stdin=tar.stdout, env=docker_env(), check=True, capture_output=True, timeout=600)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    timings["base_image_s"] = round(time.monotonic() - started, 1)


def ensure_standins(timings: dict[str, float]) -> None:
    standins = Path(__file__).parent / "standins"
    base_hash = _image_hash(BASE) or ""
    started = time.monotonic()
    for tag, dockerfile in STANDINS.items():
        wanted = _digest(base_hash.encode(), *(p.read_bytes() for p in sorted(standins.iterdir())))
        if _image_hash(tag) != wanted:
            docker("build", "-q", "-f", str(standins / dockerfile), "--label", f"{HASH_LABEL}={wanted}",
                   "-t", tag, str(standins))
    timings["standin_images_s"] = round(time.monotonic() - started, 1)


def _source_files() -> list[Path]:
    files = [REPO / "pyproject.toml", REPO / "README.md", REPO / "deploy" / "Dockerfile", REPO / "deploy" / "entrypoint.sh"]
    for package in ("podium", "podium_api", "services"):
        files += sorted(p for p in (REPO / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return [f for f in files if f.is_file()]


def ensure_podium_image(timings: dict[str, float]) -> None:
    """Wheels by the host's pip (its index, find-links and CA), then deploy/Dockerfile on the base image."""
    files = _source_files()
    wanted = _digest((_image_hash(BASE) or "").encode(), *(str(f.relative_to(REPO)).encode() for f in files),
                     *(f.read_bytes() for f in files))
    if _image_hash(PODIUM_IMAGE) == wanted:
        return
    started = time.monotonic()
    wheels = REPO / "deploy" / "wheels"
    shutil.rmtree(wheels / "podium", ignore_errors=True)
    (wheels / "podium").mkdir(parents=True)
    deps_stamp = wheels / "deps" / ".inputs"
    deps_wanted = _digest((REPO / "pyproject.toml").read_bytes(), *(r.encode() for r in IMAGE_ONLY_REQUIREMENTS))
    if deps_stamp.exists() and deps_stamp.read_text() == deps_wanted:   # only Podium's own code changed
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels / "podium"),
            str(REPO), capture_output=True, timeout_s=600)
    else:
        shutil.rmtree(wheels / "deps", ignore_errors=True)
        # Markers are evaluated for this interpreter, and Debian's python3 in the image may be an older
        # patch release (3.11.2): what such a marker adds there (redis' async-timeout below 3.11.3) is
        # added here.
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels / "deps"),
            f"{REPO}[postgres,docker]", *IMAGE_ONLY_REQUIREMENTS, capture_output=True, timeout_s=1200)
        for wheel in (wheels / "deps").glob("podium-*.whl"):
            wheel.rename(wheels / "podium" / wheel.name)
        deps_stamp.write_text(deps_wanted)
    timings["wheels_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    docker("build", "-q", "-f", str(REPO / "deploy" / "Dockerfile"), "--build-arg", f"BASE_IMAGE={BASE}",
           "--label", f"{HASH_LABEL}={wanted}", "-t", PODIUM_IMAGE, str(REPO), timeout_s=1800)
    timings["podium_image_s"] = round(time.monotonic() - started, 1)


def build_all() -> dict[str, float]:
    """Every image the compose file needs; the seconds each build took (absent: it was cached)."""
    timings: dict[str, float] = {}
    ensure_base(timings)
    ensure_standins(timings)
    ensure_podium_image(timings)
    return timings


if __name__ == "__main__":   # python -m tests.deploy.engine: build (or check) the images, leave dockerd running
    engine = Engine()
    engine.start()
    print(build_all(), flush=True)

"""Per-model Python environments: a virtualenv built from the requirements a model was logged with.

Opt-in (PODIUM_WORKER_ENV_MANAGER=virtualenv). One environment per distinct set of requirements (and
Python), cached under <data_dir>/envs/<hash> and reused by every later replica, endpoint and restart.
The environment layers the model's own pins over the platform's packages (a `.pth` file adds the
platform's site-packages after its own, as --system-site-packages would): pip installs only what the
platform lacks or pins differently, so a build takes seconds, and a pin always wins over the platform.
`mlflow` itself is left to the platform, which runs the worker's serving code with it.

What the build printed is kept: once per environment (<env>/build.log) and copied for each deployment to
<data_dir>/logs/<deployment key>/build.log, where the served model's build-logs are read from.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import shutil
import site
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

BUILD_LOG = "build.log"
_COMPLETE = ".complete"
_PLATFORM_PROVIDED = re.compile(r"^\s*(mlflow|mlflow-skinny)\s*([=<>!~;\[]|$)", re.IGNORECASE)


class EnvironmentBuildFailed(Exception):
    """The model's environment could not be built; the message says why (pip's own last words)."""


class VirtualenvManager:
    def __init__(self, envs_dir: Path, registry_uri: str, tracking_uri: str, timeout_s: float):
        self._envs_dir = envs_dir
        self._registry_uri = registry_uri
        self._tracking_uri = tracking_uri
        self._timeout_s = timeout_s
        self._builds: dict[str, asyncio.Task] = {}   # one build per environment, shared by its waiters

    async def python_for(self, model_uri: str, build_log: Path) -> str:
        """The interpreter of the model's environment, built if needed; EnvironmentBuildFailed if it cannot be."""
        build_log.parent.mkdir(parents=True, exist_ok=True)
        try:
            requirements = await asyncio.to_thread(self._requirements, model_uri)
        except Exception as exc:
            reason = getattr(exc, "message", None) or str(exc)
            build_log.write_text(f"cannot read the requirements of {model_uri}: {reason}\n")
            raise EnvironmentBuildFailed(f"cannot read the requirements of {model_uri}: {reason}") from None
        env_dir = self._envs_dir / environment_hash(requirements)
        if not (env_dir / _COMPLETE).exists():
            task = self._builds.get(env_dir.name)
            if task is None or task.done():
                task = self._builds[env_dir.name] = asyncio.create_task(self._build(env_dir, requirements))
            try:
                await asyncio.shield(task)   # a cancelled waiter leaves the build to the others
            except EnvironmentBuildFailed:
                shutil.copyfile(env_dir.with_suffix(".failed.log"), build_log)
                raise
            shutil.copyfile(env_dir / BUILD_LOG, build_log)
        else:
            with open(build_log, "w") as out:
                out.write(f"reusing the cached environment {env_dir.name} for {model_uri}\n")
                out.write((env_dir / BUILD_LOG).read_text(errors="replace"))
        return str(env_dir / "bin" / "python")

    def _requirements(self, model_uri: str) -> str:
        """The model's requirements.txt (constraints inlined), without the platform-provided mlflow."""
        import mlflow

        if self._tracking_uri:
            mlflow.set_tracking_uri(self._tracking_uri)
        if self._registry_uri:
            mlflow.set_registry_uri(self._registry_uri)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(mlflow.artifacts.download_artifacts(f"{model_uri}/requirements.txt", dst_path=tmp))
            lines = []
            for line in path.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line.startswith("-c "):   # MLflow writes `-c constraints.txt` beside requirements.txt
                    constraints = mlflow.artifacts.download_artifacts(f"{model_uri}/{line[3:].strip()}", dst_path=tmp)
                    lines += [c.strip() for c in Path(constraints).read_text().splitlines() if c.strip()]
                elif line and not _PLATFORM_PROVIDED.match(line):
                    lines.append(line)
        return "\n".join(lines) + "\n"

    async def _build(self, env_dir: Path, requirements: str) -> None:
        started = time.monotonic()
        shutil.rmtree(env_dir, ignore_errors=True)   # a build cut short earlier leaves no .complete
        env_dir.parent.mkdir(parents=True, exist_ok=True)
        log_path = env_dir.with_suffix(".failed.log")
        with contextlib.suppress(FileNotFoundError):
            log_path.unlink()
        log.info("building environment %s", env_dir.name)
        steps = [
            [sys.executable, "-m", "venv", "--without-pip", str(env_dir)],
            None,   # the .pth layering the platform's packages under the model's own
            [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install",
             "--disable-pip-version-check", "--no-input", "--progress-bar", "off", "-r", str(env_dir / "requirements.txt")],
        ]
        output = [f"$ building environment {env_dir.name}\n--- requirements.txt ---\n{requirements}---\n"]
        try:
            for step in steps:
                if step is None:
                    (env_dir / "requirements.txt").write_text(requirements)
                    _layer_platform_packages(env_dir)
                    continue
                output.append("$ " + " ".join(step) + "\n")
                code, text = await _run(step, self._timeout_s)
                output.append(text)
                if code != 0:
                    raise EnvironmentBuildFailed(f"building the model's environment failed: {_last_error(text)}")
        except EnvironmentBuildFailed:
            log_path.write_text("".join(output))
            shutil.rmtree(env_dir, ignore_errors=True)
            raise
        output.append(f"environment {env_dir.name} built in {time.monotonic() - started:.1f} s\n")
        (env_dir / BUILD_LOG).write_text("".join(output))
        (env_dir / _COMPLETE).touch()
        log.info("built environment %s in %.1f s", env_dir.name, time.monotonic() - started)


def environment_hash(requirements: str) -> str:
    """Names an environment by what decides its contents: the requirements, the Python and the platform."""
    key = "\n".join([requirements, sys.version, *site.getsitepackages()])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _layer_platform_packages(env_dir: Path) -> None:
    purelib = env_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    purelib.mkdir(parents=True, exist_ok=True)
    # addsitedir (not a bare path) so the platform's own .pth files run too, e.g. an editable install.
    lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages())
    (purelib / "_podium_platform.pth").write_text(lines)


async def _run(command: list[str], timeout_s: float) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        return 1, f"ERROR: timed out after {timeout_s:g} s\n"
    except asyncio.CancelledError:
        process.kill()
        raise
    return process.returncode or 0, stdout.decode(errors="replace")


def _last_error(text: str) -> str:
    errors = [line.strip() for line in text.splitlines() if line.strip().startswith("ERROR")]
    if errors:
        return " ".join(errors[:2])[:500]
    tail = [line.strip() for line in text.splitlines() if line.strip()]
    return (tail[-1] if tail else "no output")[:500]

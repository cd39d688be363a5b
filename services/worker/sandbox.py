"""Confines a worker replica before any model code runs (loading a model runs it: unpickling, load_context).

Entry point of every replica (`python -m services.worker.sandbox`; a replica forked from the warm template
calls `confine` itself): it reads what only the platform may read (the worker's TLS key), confines the
process while it is still single-threaded (Landlock binds the calling thread and the threads it starts
later, so nothing may run beside it), then runs the worker (services/worker/__main__.py). The model's
artifacts are already local (the scaler had them downloaded, services/worker/fetch.py) or come over the
network from a remote registry: a replica never opens the platform's registry database.

What `confine` does, in this order:
1. Descriptors: every inherited descriptor of a file or directory above stderr is pointed at /dev/null
   (a registry connection a forked replica inherits, say), so it reads nothing through it.
2. Limits: RLIMIT_DATA from the workload size, RLIMIT_NOFILE, no core files; RLIMIT_NPROC too when the
   replica has a uid of its own (it counts per uid).
3. As root: the replica's model directory is made readable (copied into its scratch directory when the
   data directory is not traversable), its scratch directory becomes its own, and it runs as uid and gid
   <worker_sandbox_uid_base> + pid, without supplementary groups: the data directory's keys, databases and
   podium.json (0600, the platform's) are closed to it by their modes. Where another uid could not even
   read the interpreter (a pyenv under /root), it stays uid 0 with every capability dropped for good, and
   Landlock alone keeps it in (without Landlock it refuses to start).
4. no_new_privs, then Landlock (where the kernel has it, ABI 1 and up): reading the interpreter, the
   libraries, /etc and the model directory; writing only its scratch directory and /dev/shm; executing
   only the interpreter; with ABI 6, no signals to and no abstract sockets of processes outside it.
5. The syscall filter (services/worker/syscall_filter.py): no keyrings, no AF_UNIX socket(), and no mode or
   owner changes unless the replica has a uid of its own.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import resource
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from services.worker.syscall_filter import install_syscall_filter

log = logging.getLogger("services.worker.sandbox")

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446   # the same on x86-64 and arm64
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_SECUREBITS, _PR_CAP_AMBIENT = 38, 4, 24, 28, 47
_SECURE_NOROOT_LOCKED = 0b1111 | (0b11 << 4) | (0b11 << 6)   # noroot, no setuid fixup, keep caps, no ambient
_CAPABILITY_VERSION_3 = 0x20080522

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2

READ = READ_FILE | READ_DIR
WRITE = READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM \
    | REFER | TRUNCATE


def handled_access(abi: int) -> int:
    """Every filesystem right Landlock ABI `abi` knows: all of them are denied unless a rule grants them."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


@dataclass(frozen=True)
class Confinement:
    """What `confine` did, for the replica's log and tests."""

    uid: int
    landlock_abi: int          # 0: the kernel has no Landlock (or it is disabled)
    model_path: str
    scratch_dir: str

    def describe(self) -> str:
        who = f"uid {self.uid}" if self.uid else "uid 0 without capabilities"
        fs = f"Landlock ABI {self.landlock_abi}" if self.landlock_abi else "no Landlock on this kernel"
        return f"sandboxed: {who}, {fs}, model {self.model_path}, writable {self.scratch_dir}"


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has none."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(version))


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _landlock_ruleset(abi: int, rules: list[tuple[str, int]]) -> int:
    """A Landlock ruleset fd denying every filesystem right but `rules` ((path, rights); missing paths are
    skipped). Built before the uid changes, so every path can still be opened."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    handled = handled_access(abi)
    attr = _RulesetAttr(handled, 0, (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = 24 if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            allowed = rights & handled
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                allowed &= _FILE_ONLY
            beneath = _PathBeneathAttr(allowed, fd)
            if libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                            ctypes.byref(beneath), ctypes.c_uint32(0)) < 0:
                raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        finally:
            os.close(fd)
    return int(ruleset)


def _restrict_self(ruleset: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    try:
        if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def landlock_rules(model_path: str, scratch_dir: str, device: str) -> list[tuple[str, int]]:
    """(path, rights) a replica keeps: read the interpreter, libraries and model; write its scratch only."""
    read_dirs = {"/usr", "/lib", "/lib64", "/lib32", "/etc", "/opt", "/sys/devices/system/cpu",
                 "/sys/fs/cgroup", "/proc/self", sys.prefix, sys.base_prefix, sys.exec_prefix, model_path}
    for entry in [*sys.path, *_package_dirs()]:
        if entry and os.path.isdir(entry):
            read_dirs.add(os.path.realpath(entry))
    rules = [(path, READ) for path in sorted(read_dirs)]
    rules += [(path, READ) for path in ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/filesystems")]
    rules += [(path, READ | WRITE_FILE) for path in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")]
    rules += [(scratch_dir, WRITE), ("/dev/shm", WRITE)]
    # The interpreter may start itself again (multiprocessing's spawn, joblib's loky): nothing else runs.
    for executable in {os.path.realpath(sys.executable), *glob.glob("/lib*/ld-linux*.so*"),
                       *glob.glob("/lib/*-linux-gnu/ld-linux*.so*"), *glob.glob("/usr/lib*/ld-linux*.so*")}:
        rules.append((os.path.realpath(executable), READ_FILE | EXECUTE))
    if device == "cuda":
        rules += [("/dev", READ | WRITE_FILE | IOCTL_DEV), ("/proc/driver", READ), ("/sys", READ)]
    return rules


def _package_dirs() -> list[str]:
    """Where Podium's own packages are (an editable install maps them outside sys.path)."""
    import importlib.util

    dirs = []
    for package in ("services", "podium_api", "podium"):
        spec = importlib.util.find_spec(package)
        dirs += list(spec.submodule_search_locations or []) if spec else []
    return dirs


def interpreter_paths() -> list[Path]:
    """What a replica must read to run at all: the interpreter, its standard library, its packages."""
    return [Path(os.path.realpath(p)) for p in
            {sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, *_package_dirs()} if p]


def _drop_capabilities() -> None:
    """Leaves uid 0 without any capability, for good: the bounding set emptied, no ambient ones, the
    securebits that would give them back to root locked off, then the sets zeroed."""
    libc = ctypes.CDLL(None, use_errno=True)
    _prctl(_PR_SET_SECUREBITS, _SECURE_NOROOT_LOCKED)
    libc.prctl(_PR_CAP_AMBIENT, ctypes.c_ulong(4), 0, 0, 0)   # PR_CAP_AMBIENT_CLEAR_ALL
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for capability in range(last + 1):
        _prctl(_PR_CAPBSET_DROP, capability)
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _neutralize_descriptors() -> None:
    """Points every inherited file or directory descriptor above stderr at /dev/null (numbers kept, so an
    object that later closes its descriptor closes nothing else)."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd <= 2 or fd == null:
                continue
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
                os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)


def _set_limits(memory_limit_bytes: int, max_open_files: int, max_processes: int) -> None:
    def lower(kind: int, value: int) -> None:
        soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_limit_bytes:
        lower(resource.RLIMIT_DATA, memory_limit_bytes)
    if max_open_files:
        lower(resource.RLIMIT_NOFILE, max_open_files)
    if max_processes:
        lower(resource.RLIMIT_NPROC, max_processes)


def _is_reachable_by_others(path: Path) -> bool:
    """Whether a process of another uid (no groups) may walk down to `path` and read it."""
    try:
        return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in [*reversed(path.parents)]) and \
            bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False


def _open_model_to(path: Path, scratch: Path, uid: int) -> Path:
    """The model directory a replica of uid `uid` can read: the machine's copy made readable, or a copy of
    it in the scratch directory when the data directory above it cannot be walked by another uid."""
    if _is_reachable_by_others(path):
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o755)
            for name in files:
                full = os.path.join(root, name)
                os.chmod(full, os.stat(full).st_mode | 0o444)
        return path
    copy = scratch / "model"
    shutil.copytree(path, copy, symlinks=False, copy_function=_link_or_copy)
    for root, dirs, files in os.walk(copy):
        os.chown(root, uid, uid)
    return copy


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link to the cached file (read-only for the replica: root's, 0644), else a copy (another
    filesystem) that is the replica's own."""
    os.chmod(source, os.stat(source).st_mode | 0o444)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
        os.chmod(destination, 0o444)


def confine(*, model_path: str, scratch_dir: str, device: str = "cpu", memory_limit_bytes: int = 0,
            max_open_files: int = 0, max_processes: int = 0, uid_base: int = 2_000_000_000) -> Confinement:
    """Confines this process for good (see the module docstring). Call it single-threaded."""
    if len(os.listdir("/proc/self/task")) != 1:
        raise RuntimeError("the sandbox must be applied while the process has one thread")
    scratch = Path(scratch_dir or tempfile.mkdtemp(prefix="podium-replica-"))
    scratch.mkdir(parents=True, exist_ok=True)
    for name in ("home", "tmp"):
        (scratch / name).mkdir(exist_ok=True)
    os.environ.update({"HOME": str(scratch / "home"), "TMPDIR": str(scratch / "tmp")})
    tempfile.tempdir = None   # recomputed from TMPDIR
    _neutralize_descriptors()
    is_root = os.geteuid() == 0
    # As root: a uid of its own, unless the interpreter (e.g. a pyenv under /root) or the scratch directory is
    # where another uid cannot reach; then it stays uid 0 without a single capability, and Landlock keeps it in.
    own_uid = is_root and all(_is_reachable_by_others(path) for path in [*interpreter_paths(), scratch.parent])
    uid = uid_base + os.getpid() if own_uid else os.geteuid()
    _set_limits(memory_limit_bytes, max_open_files, max_processes if own_uid else 0)
    if own_uid and model_path:
        model_path = str(_open_model_to(Path(model_path), scratch, uid))
    abi = landlock_abi()
    ruleset = _landlock_ruleset(abi, landlock_rules(model_path, str(scratch), device)) if abi else -1
    if is_root and not own_uid:
        if not abi:
            raise RuntimeError("cannot sandbox this replica: Podium runs as root, another uid cannot read its "
                               "Python installation, and this kernel has no Landlock")
        _drop_capabilities()
    if own_uid:
        for root, dirs, files in os.walk(scratch):
            os.chown(root, uid, uid)
            for name in files:
                os.chown(os.path.join(root, name), uid, uid)
        os.chmod(scratch, 0o700)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        _prctl(_PR_SET_DUMPABLE, 1)   # its /proc/self belongs to it again (the uid change made it root's)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    if ruleset >= 0:
        _restrict_self(ruleset)
    install_syscall_filter(may_change_modes=own_uid)
    return Confinement(uid, abi, model_path, str(scratch))


@dataclass(frozen=True)
class ServerTls:
    """The worker's TLS files, read before the sandbox closes them."""

    key: bytes
    cert: bytes
    ca: bytes


PRE_READ: dict[str, object] = {}   # what the entry point read before confining: "tls", "confinement"


def main() -> None:
    """`python -m services.worker.sandbox`: confine, then run the worker."""
    import runpy

    from services.common.logging import configure_logging
    from services.worker.settings import WorkerSettings

    from services.worker import sandbox   # this file runs as __main__: keep what it read in the module

    settings = WorkerSettings()   # not from_environment(), as services/worker/__main__.py says
    configure_logging("worker")
    if settings.worker_sandbox:
        try:
            sandbox.confine_replica(settings)
        except Exception as exc:  # never run model code unconfined: the replica fails, saying why
            from services.common.readiness import announce_failed

            log.exception("cannot sandbox this replica")
            announce_failed("worker", f"cannot sandbox the replica: {exc}")
            raise SystemExit(3) from None
    runpy.run_module("services.worker", run_name="__main__", alter_sys=True)


def confine_replica(settings) -> Confinement:
    """Reads the worker's TLS files, then confines this replica (`confine_from_settings`), logging how."""
    if settings.worker_tls_key_file and settings.worker_tls_cert_file and settings.worker_tls_ca_file:
        PRE_READ["tls"] = ServerTls(settings.worker_tls_key_file.read_bytes(),
                                    settings.worker_tls_cert_file.read_bytes(),
                                    settings.worker_tls_ca_file.read_bytes())
    confinement = confine_from_settings(settings)
    PRE_READ["confinement"] = confinement
    log.info("%s", confinement.describe())
    return confinement


def confine_from_settings(settings) -> Confinement:
    """`confine` with a replica's WorkerSettings; sets PODIUM_WORKER_MODEL_PATH to the path it may read."""
    confinement = confine(model_path=settings.worker_model_path, scratch_dir=settings.worker_scratch_dir,
                          device=settings.worker_device, memory_limit_bytes=settings.worker_memory_limit_bytes,
                          max_open_files=settings.worker_max_open_files, max_processes=settings.worker_max_processes,
                          uid_base=settings.worker_sandbox_uid_base)
    if confinement.model_path:
        os.environ["PODIUM_WORKER_MODEL_PATH"] = confinement.model_path
    return confinement


if __name__ == "__main__":
    main()

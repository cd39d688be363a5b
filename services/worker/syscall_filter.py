"""The seccomp filter a sandboxed replica runs under (services/worker/sandbox.py installs it last).

Landlock confines paths; this confines a few syscalls it does not check. The filter is classic BPF, built
here as a list of (code, jt, jf, k) rows and tested by interpreting it (tests/unit/test_sandbox.py).
"""

from __future__ import annotations

import ctypes
import os

# Syscalls Landlock leaves open that a replica has no use for: changing a file's mode or owner (a uid-0
# replica owns root's files), the kernel's keyrings, and AF_UNIX sockets by socket() (a pathname socket, the
# Docker engine's or Redis's, is reached by connect(), which Landlock does not check); socketpair() stays.
_DENIED_SYSCALLS = {
    "x86_64": (0xC000003E, {"chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260,
                            "fchmodat": 268, "fchmodat2": 452, "add_key": 248, "request_key": 249, "keyctl": 250},
               41),
    "aarch64": (0xC00000B7, {"fchmod": 52, "fchmodat": 53, "fchownat": 54, "fchown": 55, "fchmodat2": 452,
                             "add_key": 217, "request_key": 218, "keyctl": 219}, 198),
}
_EPERM, _AF_UNIX = 1, 1


_FILE_MODE_CALLS = ("chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat")


def seccomp_program(machine: str, may_change_modes: bool) -> list[tuple[int, int, int, int]]:
    """The classic-BPF seccomp filter (code, jt, jf, k) for `machine`: EPERM for `_DENIED_SYSCALLS` (but
    the mode and owner calls where `may_change_modes`: a replica with a uid of its own owns only its own
    files), for socket(AF_UNIX, ...), for another architecture's or the x32 syscalls; the rest is allowed."""
    arch, denied, socket_nr = _DENIED_SYSCALLS[machine]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    numbers = sorted(n for name, n in denied.items() if not (may_change_modes and name in _FILE_MODE_CALLS))
    # Layout: arch check, nr loaded, x32 check, one test per denied nr, socket test, its domain, allow, deny.
    deny = 3 + 1 + len(numbers) + 3 + 1
    program = [(ld, 0, 0, 4), (jeq, 0, deny - 2, arch), (ld, 0, 0, 0), (jge, deny - 4, 0, 0x40000000)]
    for number in numbers:
        program.append((jeq, deny - len(program) - 1, 0, number))
    program.append((jeq, 0, 2, socket_nr))
    program.append((ld, 0, 0, 16))                       # args[0], the domain
    program.append((jeq, deny - len(program) - 1, 0, _AF_UNIX))
    program.append((ret, 0, 0, 0x7FFF0000))              # SECCOMP_RET_ALLOW
    program.append((ret, 0, 0, 0x00050000 | _EPERM))     # SECCOMP_RET_ERRNO
    assert len(program) == deny + 1
    return program


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def install_syscall_filter(may_change_modes: bool) -> bool:
    """Installs `seccomp_program` (after no_new_privs); False on a machine it has no table for."""
    machine = os.uname().machine
    if machine not in _DENIED_SYSCALLS:
        return False
    program = seccomp_program(machine, may_change_modes)
    filters = (_SockFilter * len(program))(*[_SockFilter(*row) for row in program])
    fprog = _SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(22, ctypes.c_ulong(2), ctypes.byref(fprog), 0, 0) != 0:   # PR_SET_SECCOMP, MODE_FILTER
        raise OSError(ctypes.get_errno(), "seccomp filter refused")
    return True

"""A service process started ahead of need: `python -m services.common.standby <module>` imports the service's
modules, then waits on stdin for `go` and runs `python -m <module>` in place.

`podium up` keeps one such spare per router (podium/launcher.py), so a router that dies is replaced by a process
that has already paid for its imports, most of a router's start (about 0.8 s on an idle core, more on a loaded
one). Its environment is the one the router will run with; it binds nothing until told to go. Its command
line stays the standby's: once running it is named `podium-<service>` (ps, /proc/<pid>/comm), e.g.
`podium-router`, which is how a spare still waiting is told apart (is_waiting_spare). It exits if its
supervisor closes the pipe.
"""

from __future__ import annotations

import importlib
import runpy
import sys

from services.common.processes import set_process_name

STANDBY_MODULE = "services.common.standby"   # how the launcher runs it


def running_name(module: str) -> bytes:
    """Its name once told to go, as /proc/<pid>/comm shows it: at most 15 bytes (e.g. `podium-control_`)."""
    return f"podium-{module.rsplit('.', 1)[-1]}".encode()[:15]


def is_waiting_spare(cmdline: list[bytes], comm: bytes) -> bool:
    """Whether a process (its /proc cmdline split at NULs, and its comm) is a spare not yet told to go."""
    if STANDBY_MODULE.encode() not in cmdline:
        return False
    service = cmdline[cmdline.index(STANDBY_MODULE.encode()) + 1:][:1]
    return not service or comm.strip() != running_name(service[0].decode())


def main() -> None:
    module = sys.argv[1]
    importlib.import_module(f"{module}.__main__")   # its imports only: its main() runs under __name__ == "__main__"
    if sys.stdin.buffer.readline().strip() != b"go":
        return   # the supervisor stopped, or went away
    set_process_name(running_name(module))
    sys.argv = [sys.argv[0]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

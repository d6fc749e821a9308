"""Child processes that die with their parent: the app's torchrun child and its ranks end when the app ends (even by
kill -9), so no orphan trains on beside the next run. `python -m ftui.guard MODULE ARGS...` runs MODULE guarded."""

from __future__ import annotations

import ctypes
import logging
import os
import runpy
import signal
import sys

log = logging.getLogger(__name__)

PARENT_ENV = "FTUI_PARENT_PID"  # the PID a guarded child expects as its parent; set for the children it starts
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(expected_parent: int) -> bool:
    """Ask the kernel to SIGKILL this process when its parent ends (Linux); exit at once when the parent has already
    ended (the guard was set too late to catch it). False where the platform offers no such signal."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError) as exc:
            log.warning("could not arm the parent-death signal: %s", exc)
    if os.getppid() != expected_parent:
        os._exit(1)  # our parent is gone already: nobody would stop or read this process
    return armed


def guard_from_env() -> None:
    """In a process started by a guarded parent (a rank under the app's torchrun): die with that parent."""
    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit():
        die_with_parent(int(parent))


def main(argv: list[str]) -> None:
    """Guard this process against its parent's death, then run `argv[0]` as `python -m` would, with the rest as its
    arguments; the processes it starts (torchrun's ranks) inherit the guard's PID as the parent they die with."""
    guard_from_env()
    os.environ[PARENT_ENV] = str(os.getpid())
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

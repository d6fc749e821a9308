"""The app's side of a multi-process run: a `torchrun` child process trains a run the app created, a thread of the app
supervises it (its events and progress come back through the store; Stop is a signal torchrun passes to every rank;
a child that dies leaves the run interrupted, resumable from its last snapshot)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ftui.guard import PARENT_ENV
from ftui.progress import Progress
from ftui.runs import Run, RunStatus
from ftui.store import Store

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the supervisor reads the run back from the store
STOP_GRACE_S = 90.0  # after a Stop, how long the ranks may take to save and leave before they are killed
LOG_FILE = "launcher.log"  # torchrun's and the ranks' own output, in the run's folder
PID_FILE = ".rank-{rank}.pid"
LAUNCHER_FILE = ".launcher.pid"  # "<app pid> <torchrun pid>" while the app supervises a torchrun child


def available_processes(cpu_processes: int) -> int:
    """How many processes a run may use here: one per visible GPU, or on CPU what the operator allows
    (FTUI_CPU_PROCESSES; 0 = none: on CPU one process already uses every core)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return cpu_processes


def torchrun_command(run_id: str, runs_dir: Path, processes: int, resume: bool, offline: bool) -> list[str]:
    """The child: torchrun on this machine under ftui.guard (it and its ranks die with the app), `processes` ranks,
    each `python -m ftui train --run-id ...`."""
    return [
        sys.executable, "-m", "ftui.guard", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "ftui", "train", "--run-id", run_id, "--runs-dir", str(runs_dir),
        *(["--from-snapshot"] if resume else []), *(["--offline"] if offline else []),
    ]  # fmt: skip


def note_pid(out_dir: Path, rank: int) -> None:
    """Each rank leaves its PID, so a supervisor can end ranks a killed launcher left behind."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / PID_FILE.format(rank=rank)).write_text(str(os.getpid()))
    except OSError as exc:
        log.info("no pid file for rank %d: %s", rank, exc)


def _end_ranks(out_dir: Path) -> None:
    """SIGKILL ranks still alive after their launcher ended (torchrun killed with -9 cannot end them itself)."""
    for path in out_dir.glob(".rank-*.pid"):
        try:
            pid = int(path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"ftui" in cmdline:  # still one of ours, not a reused PID
                os.kill(pid, signal.SIGKILL)
                log.warning("ended rank process %d left behind by its launcher", pid)
        except (OSError, ValueError):
            pass  # gone already
        path.unlink(missing_ok=True)


def _started(pid: int) -> int:
    """When a process started (clock ticks since boot; 0 when it is gone): a PID and this name one process, even
    after the PID is reused."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _same(pid: int, started: int) -> bool:
    """The process that had this PID and start time still runs (not only its zombie)."""
    return _started(pid) == started != 0 and not _gone(pid)


def end_orphans(runs_dir: Path, unfinished: list[str], folders: dict[str, Path] | None = None) -> list[str]:
    """At an app's start: end the torchrun children (and their ranks) that an app which died left training, so no
    orphan trains beside the next run; returns the ids of the runs whose children were ended. A child whose app
    still lives (another app on this folder, or the app whose rank 0 is calling) is left alone. `folders` maps a run
    id to its folder where that is not <runs>/<run_id> (a signed-in user's run)."""
    ended = []
    for run_id in unfinished:
        path = (folders or {}).get(run_id, runs_dir / run_id) / LAUNCHER_FILE
        try:
            app_pid, app_started, launcher_pid, launcher_started = (int(x) for x in path.read_text().split())
        except (OSError, ValueError):
            continue
        if _same(app_pid, app_started):
            continue  # its app is alive: that app supervises it
        if _same(launcher_pid, launcher_started):
            try:
                os.killpg(launcher_pid, signal.SIGKILL)  # torchrun leads its own process group
            except OSError as exc:
                log.info("could not end torchrun %d: %s", launcher_pid, exc)
            log.warning("ended torchrun %d of run %s, left training by an app that ended", launcher_pid, run_id)
        pids = [launcher_pid, *_rank_pids(path.parent)]
        _end_ranks(path.parent)
        path.unlink(missing_ok=True)
        _await_gone(pids, ORPHAN_WAIT_S)  # so the store's liveness check already sees them dead
        ended.append(run_id)
    return ended


ORPHAN_WAIT_S = 5.0  # how long a start-up waits for the killed orphans to be gone


def _rank_pids(out_dir: Path) -> list[int]:
    pids = []
    for path in out_dir.glob(".rank-*.pid"):
        try:
            pids.append(int(path.read_text()))
        except (OSError, ValueError):
            continue
    return pids


def _gone(pid: int) -> bool:
    """No such process, or only its zombie is left."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _await_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    keep = [line for line in text if line.strip()][-lines:]
    return " | ".join(line.strip()[:300] for line in keep)


def supervise(run: Run, store: Store, command: list[str], env: dict[str, str], has_snapshot: Callable[[], bool]) -> None:
    """Worker body of a multi-process run in the app: start torchrun, keep the run's heartbeat until rank 0 takes the
    run over, mirror its record, events and progress into `run`, pass a Stop on as SIGINT, and after the child ends
    settle a run it left unfinished (interrupted when a snapshot can resume it, else failed). Never raises."""
    log_path = run.out_dir / LOG_FILE
    try:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        # The guard makes the child die with this thread's process; the launcher file lets a restarted app end the
        # children of an app that died where no parent-death signal exists.
        env = {**env, PARENT_ENV: str(os.getpid())}
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        me = os.getpid()
        (run.out_dir / LAUNCHER_FILE).write_text(f"{me} {_started(me)} {proc.pid} {_started(proc.pid)}")
    except OSError as exc:
        run.finish(RunStatus.FAILED, f"torchrun could not be started ({exc}).", {})
        return
    run.set_progress(phase="starting processes", launcher_pid=proc.pid)
    handed, stop_sent = False, 0.0
    code: int | None = None
    while code is None:
        try:
            code = proc.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            code = None
        try:
            handed = _mirror(run, store, handed, proc.pid)
        except Exception as exc:  # noqa: BLE001 - a busy store: try again at the next poll
            log.info("could not read run %s back from the store: %s", run.run_id, exc)
        if run.stop_event.is_set() and code is None:
            if not stop_sent:
                stop_sent = time.monotonic()
                os.kill(proc.pid, signal.SIGINT)  # torchrun sends it to every rank; rank 0 stops them all at one step
            elif time.monotonic() - stop_sent > STOP_GRACE_S:
                log.warning("run %s: the ranks did not stop within %.0f s; killing them", run.run_id, STOP_GRACE_S)
                os.killpg(proc.pid, signal.SIGKILL)
    _end_ranks(run.out_dir)
    (run.out_dir / LAUNCHER_FILE).unlink(missing_ok=True)
    try:
        _mirror(run, store, True, proc.pid)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not read run %s back from the store: %s", run.run_id, exc)
    if run.status.finished:
        return
    why = f"The torchrun launcher ended (exit code {code}) before the run finished"
    said = _tail(log_path)
    if has_snapshot():
        run.finish(RunStatus.INTERRUPTED, f"{why}; Resume continues from its last snapshot. Its output: {said}")
    else:
        run.finish(RunStatus.FAILED, f"{why}. Its output ({log_path}): {said}")


def _mirror(run: Run, store: Store, handed: bool, launcher_pid: int) -> bool:
    """Bring the app's copy of the run up to date; keep its heartbeat until rank 0 has taken it over. True once it
    has."""
    rec = store.header(run.run_id)
    if rec is None:
        return handed
    if not handed and rec.owner == store.identity:
        store.beat(run.run_id)  # torchrun and the ranks are still starting: the run is alive, and ours
        return False
    shared = (store.progress(run.run_id) or Progress()).merged(launcher_pid=launcher_pid)
    run.apply_record(rec, store.events(run.run_id, len(run.events())), shared)
    return True

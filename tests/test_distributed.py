"""Data-parallel runs under torchrun (gloo, 2 processes on this CPU): same curves and weights as one process with the
same global batch, exact evaluation, rank 0 alone writes, Stop reaches every rank, a killed rank fails the run, resume
with 1 or 2 processes; the sharding rule and the lost-peer message without processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import processes_config, wind_down

from ftui.distributed import ERROR_FILE, Dist

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "FTUI_OFFLINE": "1"}


@pytest.fixture(scope="module")
def still_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT without dropout: with dropout, no two processes could draw the same masks as one."""
    from helpers import tiny_config
    from transformers import AutoModel, AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    cfg = tiny_config("bert")
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    cfg.classifier_dropout = 0.0
    path = tmp_path_factory.mktemp("still-bert")
    torch.manual_seed(0)
    AutoModel.from_config(cfg).save_pretrained(path)
    AutoTokenizer.from_pretrained(packaged_checkpoint()).save_pretrained(path)
    return path


def train_cmd(processes: int, *args: str) -> list[str]:
    """`python -m ftui train ...`, under torchrun when processes > 1."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    return [sys.executable, *launcher, "-m", "ftui", "train", *args, "--offline"]


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def run_folder(runs: Path) -> Path:
    (folder,) = [p for p in runs.iterdir() if p.is_dir()]
    return folder


def store_events(runs: Path, run_id: str) -> list[dict]:
    with sqlite3.connect(runs / "ftui.db") as conn:
        return [json.loads(d) for (d,) in conn.execute("SELECT data FROM events WHERE run_id=? ORDER BY seq", (run_id,))]


def store_row(runs: Path, run_id: str) -> tuple:
    with sqlite3.connect(runs / "ftui.db") as conn:
        return conn.execute("SELECT status, error, pid, result FROM runs WHERE run_id=?", (run_id,)).fetchone()


# ------------------------------------------------------------------------------------------------ without processes
def test_shard_splits_every_global_batch_by_row_and_weights_the_shares() -> None:
    idx = np.array([7, 2, 9, 4, 11])
    parts = [Dist(r, 2).shard(idx) for r in range(2)]
    assert sorted(np.concatenate([p[0] for p in parts]).tolist()) == sorted(idx.tolist())
    assert parts[0][0].tolist() == [2, 4] and parts[1][0].tolist() == [7, 9, 11]  # a row always goes to one rank
    # DDP averages the ranks' gradients: factor_r * (mean over rank r's rows), averaged over ranks, is the global mean
    loss = np.random.default_rng(0).random(12)
    assert sum(f * loss[p].mean() for p, f in parts) / 2 == pytest.approx(loss[idx].mean())
    assert [f for _, f in parts] == [pytest.approx(2 * 2 / 5), pytest.approx(3 * 2 / 5)]
    weights = np.array([1.0, 3.0, 1.0, 3.0, 1.0])  # class-weighted cross-entropy: a weighted mean over the batch
    wparts = [Dist(r, 2).shard(idx, weights) for r in range(2)]
    wmean = lambda rows: (loss[rows] * weights[np.isin(idx, rows)]).sum() / weights[np.isin(idx, rows)].sum()  # noqa: E731
    assert sum(f * wmean(p) for p, f in wparts) / 2 == pytest.approx((loss[idx] * weights).sum() / weights.sum())
    lone, factor = Dist(1, 2).shard(np.array([6]))  # nothing for rank 1: it computes a row with no weight
    assert lone.tolist() == [6] and factor == 0.0
    assert Dist().shard(idx)[0] is idx and Dist().shard(idx)[1] == 1.0


def test_a_lost_peer_is_told_with_what_it_left(tmp_path: Path) -> None:
    dist = Dist(0, 3)
    dist.error_dir = tmp_path
    assert "ended unexpectedly" in dist.lost_message(RuntimeError("Connection closed by peer"))
    (tmp_path / ERROR_FILE.format(rank=2)).write_text("Out of host memory at batch size 64.")
    said = dist.lost_message(RuntimeError("Connection closed by peer"))
    assert "rank 2: Out of host memory at batch size 64." in said and "3-process" in said


def test_under_nccl_a_lost_peer_raises_here_within_minutes(monkeypatch) -> None:
    """Bug (NCCL half): the process group waited 30 minutes for a lost peer and torchrun's default error handling (1)
    then let the watchdog kill the process, with no message and no snapshot; and blocking wait (once set here) turns
    async error handling off, so the watchdog aborted nothing and DDP's all-reduce, which the CPU never waits on, hung.
    Stand-in for a GPU machine: CUDA is reported, init_process_group is recorded instead of run. It shows the settings
    the process group is made with, not what NCCL does with them: that only a run on GPUs with a killed rank shows."""
    from ftui import distributed

    seen: dict = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # what torchrun sets
    monkeypatch.setenv("TORCH_NCCL_BLOCKING_WAIT", "1")  # what a user or a launcher may set
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: seen.update(device=i))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, timeout: seen.update(b=backend, t=timeout))

    def new_group(backend: str, timeout) -> str:
        seen.update(control=backend)
        return "control group"

    monkeypatch.setattr(torch.distributed, "new_group", new_group)
    dist = distributed.from_env()
    assert (dist.rank, dist.world, dist.backend, seen["b"], seen["device"]) == (1, 2, "nccl", "nccl", 1)
    assert seen["t"].total_seconds() <= 600
    assert (dist.control, seen["control"]) == ("control group", "gloo")  # Stop is agreed on the host: no GPU sync
    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "2"  # the watchdog aborts; the failure raises here
    assert os.environ["TORCH_NCCL_BLOCKING_WAIT"] == "0"  # else async error handling is switched off


class _AloneRank0(Dist):
    """Rank 0 of a 2-process run with its collectives answered locally (no process group): every rank would agree.
    `backend` is only a name here: everything runs on the CPU."""

    def __init__(self, backend: str = "nccl") -> None:
        super().__init__(0, 2, 0, backend)

    def agree(self, flag: bool) -> bool:
        return flag

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def gather(self, obj):
        return [obj]

    def broadcast(self, obj):
        return obj

    def barrier(self) -> None:
        pass

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model


@pytest.mark.parametrize("backend", ["gloo", "nccl"])
def test_a_collective_that_fails_inside_backward_ends_the_run_as_a_lost_peer_resumable(
    backend: str, still_bert: Path, tmp_path: Path, monkeypatch
) -> None:
    """Bug: a failed NCCL collective surfaces where the process waits, often in backward (DDP's gradient all-reduce),
    not in Dist's own collectives; it failed the run as a bare DistBackendError with no snapshot. Now it is the
    lost-peer failure, resumable. Under gloo a new snapshot of the last completed step is written; under NCCL none is
    (the dead all-reduce may block device copies and leave half-summed gradients): the last periodic snapshot stays.

    Stand-in: the fourth step's loss raises what NCCL raises, a periodic snapshot is due at every evaluation (each
    second step), and "nccl" is only the backend's name (all on CPU, no process group). It shows which snapshot is
    kept and what the failure says; that no device copy runs before the failure lands, and that the watchdog's abort
    frees the stream, only a GPU run with a killed rank shows."""
    from ftui import training_core as training
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.data import load_data
    from ftui.finetune import ClassificationObjective, train_run
    from ftui.run_layout import can_resume
    from ftui.runs import Run, RunStatus

    real_loss, calls = ClassificationObjective.train_loss, []

    def loss(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise torch.distributed.DistBackendError("[Rank 0] Watchdog caught collective operation timeout: ALLREDUCE")
        return real_loss(self, *args, **kwargs)

    monkeypatch.setattr(ClassificationObjective, "train_loss", loss)
    monkeypatch.setattr(training, "RESUME_EVERY_S", 0.0)  # a periodic snapshot at every evaluation
    cfg = RunConfig(DataConfig(max_train_examples=128), ModelConfig(source="local", checkpoint=str(still_bert)),
                    TrainConfig(epochs=1, batch_size=16, max_length=32, evals_per_epoch=4))  # fmt: skip
    run = Run("r-lost", "lost", cfg, tmp_path / "lost")
    train_run(run, lambda: load_data(cfg.data), dist=_AloneRank0(backend))
    assert run.status == RunStatus.FAILED
    assert "Another process of this 2-process run ended unexpectedly" in run.error and "Watchdog" in run.error
    assert run.result["resumable"] and can_resume(run)
    kept = torch.load(tmp_path / "lost" / "resume" / "state.pt", weights_only=True)
    if backend == "gloo":
        assert kept["step"] == 3  # the last step every rank completed
        assert "Resume continues from the last step every process completed." in run.error
    else:
        assert kept["step"] == 2  # the periodic snapshot of the evaluation at step 2, not rewritten after the failure
        assert "last periodic snapshot (step 2)" in run.error and "no new snapshot was written" in run.error


def test_under_nccl_a_lost_peer_before_any_snapshot_is_not_resumable(still_bert: Path, tmp_path: Path, monkeypatch) -> None:
    """Under NCCL with no periodic snapshot yet (the second step fails, 30 s before the first would be due), nothing is
    written at the failure (same stand-in as above): the run says to start again rather than claim a resume."""
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.data import load_data
    from ftui.finetune import ClassificationObjective, train_run
    from ftui.run_layout import can_resume
    from ftui.runs import Run, RunStatus

    real_loss, calls = ClassificationObjective.train_loss, []

    def loss(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise torch.distributed.DistBackendError("[Rank 0] Watchdog caught collective operation timeout: ALLREDUCE")
        return real_loss(self, *args, **kwargs)

    monkeypatch.setattr(ClassificationObjective, "train_loss", loss)
    cfg = RunConfig(DataConfig(max_train_examples=64), ModelConfig(source="local", checkpoint=str(still_bert)),
                    TrainConfig(epochs=1, batch_size=16, max_length=32))  # fmt: skip
    run = Run("r-early", "early", cfg, tmp_path / "early")
    train_run(run, lambda: load_data(cfg.data), dist=_AloneRank0("nccl"))
    assert run.status == RunStatus.FAILED and not run.result["resumable"] and not can_resume(run)
    assert run.error.endswith("Start the run again.") and not (tmp_path / "early" / "resume").exists()


def test_under_ddp_no_gpu_random_state_is_saved_or_restored(still_bert: Path, tmp_path: Path, monkeypatch) -> None:
    """Rank 0 alone writes the snapshot, so its GPU random states say nothing of the other ranks' GPUs: a
    multi-process run saves none and a multi-process resume restores none (each rank keeps its seeded generator).
    Stand-in: rank 0 of 2 with local collectives, torch.cuda reporting itself in use with a known state."""
    from ftui import accel
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.data import load_data
    from ftui.finetune import train_run
    from ftui.runs import Run, RunStatus

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.arange(16, dtype=torch.uint8)])
    handed: list = []
    monkeypatch.setattr(accel, "restore_cuda_rng", handed.append)
    cfg = RunConfig(DataConfig(max_train_examples=64), ModelConfig(source="local", checkpoint=str(still_bert)),
                    TrainConfig(epochs=2, batch_size=16, max_length=32))  # fmt: skip
    out = tmp_path / "ddp-rng"
    for resume in (False, True):
        run = Run("r-ddp-rng", "ddp-rng", cfg, out)
        run.listeners = [lambda ev, run=run: run.request_stop() if isinstance(ev, dict) and ev.get("type") == "train" else None]
        train_run(run, lambda: load_data(cfg.data), resume=resume, dist=_AloneRank0("gloo"))
        assert run.status == RunStatus.STOPPED, run.error
        assert torch.load(out / "resume" / "state.pt", weights_only=True)["cuda_rng"] is None
    assert handed == []  # the resume did not restore rank 0's states on this rank's GPU


def test_processes_are_checked(engine) -> None:
    from ftui.config import RunConfig, TrainConfig, validate_run
    from ftui.errors import ConfigError

    assert any("only fine-tuning" in m for m in validate_run(RunConfig(kind="baseline", baseline="tfidf",
                                                                       train=TrainConfig(processes=2))))  # fmt: skip
    assert any("processes" in m for m in validate_run(RunConfig(train=TrainConfig(processes=0))))
    offered = engine.max_processes()  # CPU here without FTUI_CPU_PROCESSES: 1 (the app's own thread)
    with pytest.raises(ConfigError, match=f"this machine offers .*; {offered + 1} processes were asked for"):
        engine.start_run(RunConfig(train=TrainConfig(processes=offered + 1, epochs=1)))


# ---------------------------------------------------------------------------------------------------- torchrun
def test_two_processes_train_like_one_with_the_same_global_batch(still_bert: Path, tmp_path: Path) -> None:
    """Two phases (DDP rebuilt for fine-tuning), the frozen-layer cache per rank, gradient accumulation (no_sync),
    class weights (a weighted mean, shared by weight)."""
    args = ["--checkpoint", str(still_bert), "--max-train-examples", "240", "--batch-size", "12", "--grad-accum", "2",
            "--epochs", "2", "--lr", "3e-3", "--schedule", "two-phase", "--head-epochs", "1", "--freeze-depth", "1",
            "--evals-per-epoch", "2", "--class-weights", "1,2"]  # fmt: skip
    out = {}
    for n in (1, 2):
        runs = tmp_path / f"runs{n}"
        done = subprocess.run(train_cmd(n, *args, "--runs-dir", str(runs)), env=ENV, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        out[n] = (runs, events_of(done.stdout))
    one, two = out[1][1], out[2][1]
    assert two[-1]["status"] == "completed"
    curve = {n: [(e["type"], e["step"], e.get("loss", e.get("eval_loss"))) for e in evs if e["type"] in ("train", "eval")]
             for n, evs in ((1, one), (2, two))}  # fmt: skip
    assert [c[:2] for c in curve[1]] == [c[:2] for c in curve[2]] and len(curve[1]) > 8
    assert max(abs(a[2] - b[2]) for a, b in zip(curve[1], curve[2], strict=True)) < 1e-5
    for a, b in zip([e for e in one if e["type"] == "eval"], [e for e in two if e["type"] == "eval"], strict=True):
        assert a["eval_accuracy"] == b["eval_accuracy"] and a["eval_macro_f1"] == b["eval_macro_f1"]
    assert one[-1]["test_accuracy"] == two[-1]["test_accuracy"]
    start = next(e for e in two if e["type"] == "start")
    assert start["processes"] == 2 and start["total_steps"] == next(e for e in one if e["type"] == "start")["total_steps"]
    from safetensors.torch import load_file

    w1, w2 = (load_file(run_folder(out[n][0]) / "model" / "model.safetensors") for n in (1, 2))
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5
    # Rank 0 alone wrote: one run folder, one store record owned by rank 0's process, each event once.
    runs2 = out[2][0]
    folder = run_folder(runs2)
    status, _, pid, _ = store_row(runs2, folder.name)
    assert status == "completed" and pid == int((folder / ".rank-0.pid").read_text())
    assert int((folder / ".rank-1.pid").read_text()) != pid
    logged = store_events(runs2, folder.name)
    assert [e["type"] for e in logged] == [e["type"] for e in two[:-1]]  # no event twice, none missing
    assert not list(folder.glob(".rank-*.error"))


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _read_until(proc: subprocess.Popen, want: str, step: int = 1) -> list[dict]:
    """Events up to the first of type `want` at or past `step` (the process's stdout is read line by line)."""
    seen = []
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith("{"):
            seen.append(json.loads(line))
            if seen[-1]["type"] == want and (seen[-1].get("step") or 0) >= step:
                return seen
    raise AssertionError(f"the run ended before a {want} event: {seen[-3:]}")


LONG = ["--max-train-examples", "400", "--batch-size", "8", "--epochs", "30", "--lr", "1e-3", "--evals-per-epoch", "1"]


@pytest.mark.slow
def test_stop_ends_every_rank_and_resume_works_with_two_or_one_process(still_bert: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = _start(train_cmd(2, "--checkpoint", str(still_bert), *LONG, "--runs-dir", str(runs)))
    first = _read_until(proc, "eval")  # a best checkpoint exists
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)  # Ctrl-C on torchrun: it passes the signal to every rank
    rest = [json.loads(line) for line in proc.stdout if line.startswith("{")]  # type: ignore[union-attr]
    proc.wait(60)
    assert time.monotonic() - t0 < 30
    end = rest[-1]
    assert end["type"] == "end" and end["status"] == "stopped" and end["kept"] == "best"
    folder = Path(end["run_dir"])
    for rank in (0, 1):  # both ranks are gone
        pid = int((folder / f".rank-{rank}.pid").read_text())
        assert not Path(f"/proc/{pid}").exists() or b"ftui" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert (folder / "resume" / "state.pt").exists() and (folder / "model" / "model.safetensors").exists()
    stopped_at = max(e["step"] for e in first + rest if e["type"] == "train")

    # Resume with 2 processes, stop again, then finish with 1 process (fewer epochs left is not needed: Stop once more).
    proc = _start(train_cmd(2, "--resume", folder.name, "--runs-dir", str(runs)))
    got = _read_until(proc, "train", step=stopped_at + 2)
    resumed = [e for e in got if e["type"] == "resume"][-1]  # earlier events are replayed first
    assert resumed["step"] >= stopped_at and resumed["processes"] == 2
    proc.send_signal(signal.SIGINT)
    second = [json.loads(line) for line in proc.stdout if line.startswith("{")]  # type: ignore[union-attr]
    proc.wait(60)
    assert second[-1]["status"] == "stopped"
    again_at = max(e["step"] for e in got + second if e["type"] == "train")
    proc = _start(train_cmd(1, "--resume", folder.name, "--runs-dir", str(runs)))
    got = _read_until(proc, "train", step=again_at + 2)
    assert [e for e in got if e["type"] == "resume"][-1]["processes"] == 1
    proc.send_signal(signal.SIGINT)
    last = [json.loads(line) for line in proc.stdout if line.startswith("{")][-1]  # type: ignore[union-attr]
    proc.wait(60)
    assert last["status"] == "stopped"
    steps = [e["step"] for e in store_events(runs, folder.name) if e["type"] == "train"]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # one curve across three launches


@pytest.mark.slow
def test_a_killed_rank_fails_the_run_with_a_message_and_leaves_it_resumable(still_bert: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = _start(train_cmd(2, "--checkpoint", str(still_bert), *LONG, "--runs-dir", str(runs)))
    _read_until(proc, "train", step=3)
    folder = run_folder(runs)
    os.kill(int((folder / ".rank-1.pid").read_text()), signal.SIGKILL)
    rest = [json.loads(line) for line in proc.stdout if line.startswith("{")]  # type: ignore[union-attr]
    assert proc.wait(60) != 0
    end = rest[-1]
    assert end["status"] == "failed" and "2-process run ended unexpectedly" in end["error"]
    assert "Resume continues" in end["error"] and end["resumable"]
    status, error, _, _ = store_row(runs, folder.name)
    assert status == "failed" and "ended unexpectedly" in error
    # Resumed with one process, it completes (capped by max steps so the test stays short).
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    eng = Engine(runs_dir=runs, hub_status=HubStatus(False, "offline (tests)"))
    try:
        run = eng.resume_run(folder.name)
        assert run.done.wait(300) and eng.join(60)
        assert run.status.value == "completed", run.error
    finally:
        eng.stop_run()
        eng.join(60)


@pytest.mark.slow
def test_accelerate_launch_runs_the_same_command(still_bert: Path, tmp_path: Path) -> None:
    """`accelerate launch --multi_gpu` is torchrun underneath: on this CPU it starts 2 gloo ranks."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ftui", "train", "--checkpoint", str(still_bert),
           "--max-train-examples", "64", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--offline"]  # fmt: skip
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = events_of(done.stdout)
    assert next(e for e in events if e["type"] == "start")["processes"] == 2 and events[-1]["status"] == "completed"


# ------------------------------------------------------------------------------------------------------- the app
@pytest.fixture()
def app_engine(tmp_path: Path):
    """The app's engine where CPU runs may use 2 processes (FTUI_CPU_PROCESSES=2)."""
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.settings import Settings

    eng = Engine(runs_dir=tmp_path / "runs", hub_status=HubStatus(False, "offline (tests)"), settings=Settings(cpu_processes=2))
    yield eng
    wind_down(eng, timeout=120)


def test_the_app_trains_a_two_process_run_in_a_torchrun_child(app_engine, still_bert: Path) -> None:
    assert app_engine.max_processes() == 2
    run = app_engine.start_run(processes_config(still_bert, 2, 200))
    steps_seen = set()
    while not run.done.wait(0.2):  # the app's copy follows the child through the store
        steps_seen.add(run.snapshot(events=False).progress.step)
    assert app_engine.join(60)
    assert run.status.value == "completed", run.error
    assert run.result["test_accuracy"] >= 0 and run.result["steps"] == 50
    assert len(steps_seen - {0}) >= 2  # progress arrived while it trained, not only at the end
    events = run.events()
    assert [e["step"] for e in events if e["type"] == "train"][-1] == 50 and any(e["type"] == "eval" for e in events)
    assert next(e for e in events if e["type"] == "start")["processes"] == 2
    rec = app_engine.store.header(run.run_id)
    assert rec.status == "completed" and rec.pid != os.getpid()  # the child's rank 0 wrote the outcome
    assert '"type": "end"' in (run.out_dir / "launcher.log").read_text()  # the child's own output is kept


@pytest.mark.slow
def test_stop_in_the_app_reaches_every_rank_and_a_killed_launcher_leaves_the_run_interrupted(
    app_engine, still_bert: Path
) -> None:
    run = app_engine.start_run(processes_config(still_bert, 40, 400))
    while not any(e["type"] == "eval" for e in run.events()):
        assert not run.done.wait(0.2), run.error
    assert app_engine.stop_run() is run
    assert run.done.wait(60) and app_engine.join(60)
    assert run.status.value == "stopped" and run.result["kept"] == "best", run.error
    assert (run.out_dir / "resume" / "state.pt").exists() and not list(run.out_dir.glob(".rank-*.pid"))

    second = app_engine.start_run(processes_config(still_bert, 40, 400))
    while not any(e["type"] == "train" for e in second.events()):
        assert not second.done.wait(0.2), second.error
    pids = [int(p.read_text()) for p in second.out_dir.glob(".rank-*.pid")]
    assert len(pids) == 2
    os.kill(second.snapshot(events=False).progress.launcher_pid, signal.SIGKILL)
    assert second.done.wait(60) and app_engine.join(60)
    assert second.status.value in ("interrupted", "failed") and "torchrun launcher ended" in (second.error or "")
    for pid in pids:  # the ranks it left behind were ended
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower():
                break
            time.sleep(0.1)  # the kernel reaps a SIGKILLed process asynchronously
        else:
            raise AssertionError(f"rank process {pid} still runs")
    third = app_engine.start_run(processes_config(still_bert, 1, 100, processes=1))  # the app keeps serving
    assert third.done.wait(120) and third.status.value == "completed"


def test_gloo_transport_errors_inside_backward_are_a_lost_peer_and_other_errors_are_not():
    """Case (slow set of stop 30): a killed rank surfaced in DDP's backward all-reduce as a plain RuntimeError from
    gloo's transport, and the run failed with that raw text instead of the lost-peer message and its snapshot."""
    from ftui.distributed import Dist, PeerLost, lost_peer_error

    said = ("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:27539: "
            "Connection closed by peer [127.0.0.1]:52204")  # fmt: skip
    assert lost_peer_error(RuntimeError(said)) and not lost_peer_error(RuntimeError("shape mismatch in linear"))
    dist = Dist(rank=0, world=2)

    def backward_with_a_dead_peer():
        raise RuntimeError(said)

    with pytest.raises(PeerLost, match="2-process run ended unexpectedly"):
        dist.guard(backward_with_a_dead_peer)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        dist.guard(lambda: (_ for _ in ()).throw(RuntimeError("shape mismatch in linear")))

"""Train on Hugging Face Jobs against a fake Hub (tests/fake_jobs_hub.py): the plan, submission, a real run, cancel,
and each bad input refused before anything is submitted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from helpers import wait_until
from huggingface_hub import HfApi, constants

from ftui import jobs
from ftui.cli import main
from tests.fake_jobs_hub import BUCKET, TOKEN, serving

SMALL = ["--max-train-examples", "64", "--epochs", "1", "--max-length", "32", "--evals-per-epoch", "1"]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fake Hub with one bucket (a local folder), the token in HF_TOKEN, and huggingface_hub pointed at it."""
    with serving(tmp_path, monkeypatch) as fake:
        yield fake


def _argv(bucket: Path, *extra: str) -> list[str]:
    flags = ["--bucket", BUCKET, "--bucket-dir", str(bucket), "--runs-dir", str(bucket / "runs")]
    return ["train", "--on", "hf-jobs", *flags, *extra]


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def _files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_dry_run_is_what_run_job_gets_and_the_job_trains_a_run_the_engine_reads(
    hub: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = _argv(hub.bucket, "--flavor", "a10g-small", "--max-minutes", "5", *SMALL)
    assert main([*argv, "--dry-run"]) == 0
    (plan,) = _lines(capsys)
    assert plan["type"] == "job_plan" and not hub.jobs  # printed, nothing submitted
    assert not (hub.bucket / jobs.CODE_DIR).exists()  # and nothing staged

    calls: list[dict[str, Any]] = []
    real = HfApi.run_job

    def spy(self: HfApi, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(self, **kwargs)

    monkeypatch.setattr(HfApi, "run_job", spy)
    assert main([*argv, "--poll-seconds", "0.2"]) == 0
    out = _lines(capsys)
    (got,) = calls
    assert got["image"] == plan["image"] and got["flavor"] == plan["flavor"] == "a10g-small"
    assert got["command"] == plan["command"] and got["env"] == plan["env"] and got["timeout"] == plan["timeout"]
    assert [v.to_dict() for v in got["volumes"]] == plan["volumes"]
    assert sorted(got["secrets"]) == plan["secrets"] == ["HF_TOKEN"]
    assert plan["timeout"] == (5 + jobs.STARTUP_MINUTES) * 60
    assert plan["estimated_cost_usd"] == round(1.00 * plan["timeout"] / 3600, 2)  # a10g-small at $1.00/h
    assert [o["stage"] for o in out if o["type"] == "job_stage"][-1] == "COMPLETED"

    # The job ran the staged copy of this ftui and wrote its run into the shared runs folder.
    (job,) = hub.jobs.values()
    (code,) = (hub.bucket / jobs.CODE_DIR).iterdir()
    assert job.spec["environment"]["PYTHONPATH"] == f"{jobs.MOUNT}/{jobs.CODE_DIR}/{code.name}"
    assert (code / "ftui" / "__pycache__").is_dir()  # Python compiled the staged copy: the job imported it
    assert (hub.bucket / jobs.JOBS_DIR / f"{job.id}.json").is_file()
    from ftui.engine import Engine

    runs = Engine(runs_dir=hub.bucket / "runs").runs()
    # the job's `ftui train` fits the TF-IDF baseline beside the model on data without one, as it does anywhere
    assert sorted((r.config.kind, r.status.value) for r in runs) == [("baseline", "completed"), ("finetune", "completed")]
    (model,) = [r for r in runs if r.config.kind == "finetune"]
    assert model.config.data.max_train_examples == 64 and model.config.train.max_minutes == 5
    assert 0.0 <= model.result["test_accuracy"] <= 1.0
    # The token is in no file the plan, the submission, the job or the store wrote, nor in what the CLI printed.
    assert _files_holding(hub.bucket, TOKEN) == []
    assert TOKEN not in json.dumps(plan) + json.dumps(out) + "\n".join(line for _, line in job.logs)


@pytest.mark.slow  # 90 s on the shared 2-core machine: a job trains on the copy
def test_a_local_csv_is_copied_to_the_bucket_once_and_the_job_trains_on_it(
    hub: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    from ftui.data import DEMO_DATASET

    csv = tmp_path / "my reviews.csv"  # outside the bucket, as a Data-tab upload is
    pd.read_csv(DEMO_DATASET).head(80).to_csv(csv, index=False)
    argv = _argv(hub.bucket, "--flavor", "cpu-basic", "--max-minutes", "5", *SMALL, "--dataset", str(csv))
    assert main([*argv, "--dry-run"]) == 0
    (plan,) = _lines(capsys)
    where = plan["data_upload"]["to"]
    assert plan["data_upload"]["from"] == str(csv.resolve()) and where.startswith(f"{jobs.MOUNT}/ftui-data/")
    assert where.endswith("/my_reviews.csv")  # a name safe in any shell or URL
    sent = json.loads(plan["command"][plan["command"].index("--run-config") + 1])["data"]
    assert sent["source"] == "local" and sent["dataset_id"] == where and sent["uploaded_from"] == str(csv.resolve())
    assert not (hub.bucket / "ftui-data").exists()  # --dry-run copies nothing

    assert main([*argv, "--poll-seconds", "0.2"]) == 0, _lines(capsys)
    assert [o["stage"] for o in _lines(capsys) if o["type"] == "job_stage"][-1] == "COMPLETED"
    copy = hub.bucket / where.removeprefix(jobs.MOUNT + "/")
    assert copy.read_bytes() == csv.read_bytes()
    from ftui.recipes import recipe_of

    runs = _engine(hub).runs()  # the run, and the TF-IDF baseline fitted beside it on new data
    assert [r.status.value for r in runs] == ["completed"] * 2
    assert {r.config.data.uploaded_from for r in runs} == {str(csv.resolve())}
    (run,) = [r for r in runs if not recipe_of(r.config).reference]
    assert 0.0 <= run.result["test_accuracy"] <= 1.0
    before = copy.stat().st_mtime_ns
    assert main([*argv, "--detach"]) == 0  # the same content again: the copy on the bucket is reused, not rewritten
    assert [p.name for p in (hub.bucket / "ftui-data").iterdir()] == [copy.parent.name]
    assert copy.stat().st_mtime_ns == before


def test_cancel_stops_the_job(hub: Any) -> None:
    from ftui.config import RunConfig, TrainConfig

    cfg = RunConfig(train=TrainConfig(epochs=50, max_minutes=5, max_length=32, learning_rate=1e-4))
    target = jobs.JobTarget(BUCKET, hub.bucket, hub.bucket / "runs")
    plan = jobs.plan_job(cfg, "cpu-basic", target, jobs.list_hardware(TOKEN))
    assert plan.price_source == "list_jobs_hardware"
    job = jobs.submit(plan, target, TOKEN)
    api = jobs.hub_api(TOKEN)
    assert api.wait_for_job(job.id, stages=["RUNNING"], timeout=60, poll_interval=0.1).status.stage == "RUNNING"
    jobs.cancel(job.id, "alice", TOKEN)
    assert jobs.stage(job.id, "alice", TOKEN) == "CANCELED"
    # The process is gone, not just relabelled (SIGTERM asks a training run to stop at its next step: wait for it).
    _wait(lambda: hub.jobs[job.id].proc.poll() is not None, 60.0)


def test_a_job_past_its_timeout_is_a_clear_message(
    hub: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "STARTUP_MINUTES", 0)
    argv = _argv(hub.bucket, "--flavor", "cpu-basic", "--max-minutes", "0.05", "--poll-seconds", "0.2", *SMALL)
    assert main(argv) == 1
    out = _lines(capsys)
    assert out[0]["type"] == "job" and hub.jobs[out[0]["job_id"]].spec["timeoutSeconds"] == 3
    (error,) = [o for o in out if o["type"] == "error"]
    assert error["stage"] == "ERROR" and error["message"].startswith("The job ran past its time limit")
    assert out[-1]["type"] == "job_logs"


def test_a_multi_gpu_flavor_trains_under_torchrun_in_the_job(hub: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Two ranks (gloo on this CPU machine standing in for the flavor's 2 GPUs) train one run; rank 0 writes it.
    argv = _argv(hub.bucket, "--flavor", "a10g-largex2", "--max-minutes", "5", "--poll-seconds", "0.2", *SMALL)
    assert main(argv) == 0, _lines(capsys)
    (job,) = hub.jobs.values()
    assert "torchrun --nproc_per_node 2 -m ftui train" in job.spec["command"][2]
    from ftui.engine import Engine

    (run,) = Engine(runs_dir=hub.bucket / "runs").runs()
    assert run.status.value == "completed" and run.config.train.processes == 2


def test_log_tail_of_a_failed_job(hub: Any) -> None:
    # A job whose `train` refuses its config (validated again inside the job) fails; its logs say why.
    from ftui.config import RunConfig, TrainConfig

    cfg = RunConfig(train=TrainConfig(max_minutes=1))
    target = jobs.JobTarget(BUCKET, hub.bucket, hub.bucket / "runs")
    plan = jobs.plan_job(cfg, "cpu-basic", target, jobs.list_hardware(TOKEN))
    jobs.stage_code(target, plan.code_name)
    broken = [c if not c.startswith("{") else c.replace('"epochs": 3.0', '"epochs": -1') for c in plan.command]
    job = jobs.hub_api(TOKEN).run_job(namespace="alice", **{**plan.run_job_kwargs(TOKEN), "command": broken})
    final = jobs.hub_api(TOKEN).wait_for_job(job.id, timeout=120, poll_interval=0.1)
    assert final.status.stage == "ERROR"
    tail = jobs.log_tail(job.id, "alice", TOKEN)
    assert any("epochs" in line for line in tail), tail


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no token", "Jobs need a Hugging Face token"),
        ("bad token", "The Hugging Face token was refused"),
        ("unknown flavor", "Unknown Jobs flavor 'b9000-huge'"),
        ("no max minutes", "A Jobs run needs a time cap"),
        ("no flavor", "A Jobs run needs hardware"),
        ("bucket missing on the Hub", "The bucket alice/nope was not found on the Hub"),
        ("bucket folder missing", "does not exist on this machine"),
        ("runs folder off the bucket", "is not on the bucket"),
        ("local checkpoint", "A local checkpoint cannot reach a job"),
    ],
)
def test_each_bad_input_is_a_message_before_anything_is_submitted(
    hub: Any, case: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _argv(hub.bucket, "--flavor", "a10g-small", "--max-minutes", "5", *SMALL)
    if case == "no token":
        monkeypatch.delenv("HF_TOKEN")
        assert huggingface_hub.get_token() is None
    elif case == "bad token":
        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    elif case == "unknown flavor":
        argv[argv.index("a10g-small")] = "b9000-huge"
    elif case == "no max minutes":
        argv[argv.index("--max-minutes") + 1] = "0"
    elif case == "no flavor":
        argv[argv.index("a10g-small")] = ""
    elif case == "bucket missing on the Hub":
        argv[argv.index(BUCKET)] = "alice/nope"
    elif case == "bucket folder missing":
        argv[argv.index("--bucket-dir") + 1] = str(tmp_path / "not-mounted")
    elif case == "runs folder off the bucket":
        argv[argv.index("--runs-dir") + 1] = str(tmp_path / "elsewhere")
    elif case == "local checkpoint":
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / "config.json").write_text("{}")
        argv += ["--checkpoint", str(tmp_path / "ckpt")]
    assert main(argv) == 2
    (line,) = _lines(capsys)
    assert line["type"] == "error" and message in line["message"], line
    assert not hub.jobs  # nothing submitted
    assert not (hub.bucket / jobs.CODE_DIR).exists()  # nothing staged


def test_hardware_falls_back_to_the_dated_table_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the call fails
    got = jobs.list_hardware("hf_x")
    assert got.source.startswith(f"table of {jobs.HARDWARE_TABLE_DATE}") and "list_jobs_hardware failed" in got.source
    assert got.get("a100-large") is not None and got.get("a100-large").usd_per_hour == jobs.FALLBACK_PRICES["a100-large"]
    assert [jobs.Flavor(n, 0).gpus for n in ("cpu-basic", "t4-small", "a10g-largex2", "h200x8")] == [0, 1, 2, 8]


def _engine(hub: Any) -> Any:
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    return Engine(runs_dir=hub.bucket / "runs", hub_status=HubStatus(True, "the fake Hub"))


def _wait(what: Any, seconds: float = 120.0) -> Any:
    return wait_until(what, seconds)


def test_engine_submits_with_the_viewers_token_only_and_finds_the_job_again_after_a_restart(hub: Any) -> None:
    from ftui.config import DataConfig, RunConfig, TrainConfig
    from ftui.errors import FtuiError
    from ftui.workspace import Viewer

    engine = _engine(hub)
    target = engine.job_target(BUCKET, hub.bucket)
    cfg = RunConfig(data=DataConfig(max_train_examples=64),
                    train=TrainConfig(epochs=1, max_length=32, max_minutes=5, evals_per_epoch=1, learning_rate=1e-4))  # fmt: skip
    # HF_TOKEN is set in this process (on a Space: the owner's); the engine never falls back to it.
    with pytest.raises(FtuiError, match="Jobs need your Hugging Face token"):
        engine.submit_job(cfg, "cpu-basic", target, None)
    assert not hub.jobs
    note = engine.submit_job(cfg, "cpu-basic", target, TOKEN)
    assert note.run_name.startswith("job-cpu-basic-") and note.namespace == "alice"
    final = jobs.hub_api(TOKEN).wait_for_job(note.job_id, timeout=180, poll_interval=0.2)
    assert final.status.stage == "COMPLETED", jobs.log_tail(note.job_id, "alice", TOKEN)

    again = _engine(hub)  # the app went away and came back: the note on the bucket leads it to the job and its run
    (view,) = again.jobs(again.job_target(BUCKET, hub.bucket), TOKEN)
    assert view.note == note and view.stage == "COMPLETED"
    assert view.run is not None and view.run.name == note.run_name and view.run.status.value == "completed"
    assert again.jobs(target, TOKEN, viewer=Viewer(user="bob", scoped=True)) == []  # another user's job is not listed
    assert _files_holding(hub.bucket, TOKEN) == []


def test_cancel_stops_the_run_at_a_step_and_keeps_a_snapshot(hub: Any) -> None:
    from ftui.config import DataConfig, RunConfig, TrainConfig
    from ftui.events import EventType
    from ftui.run_layout import RESUME_DIR

    engine = _engine(hub)
    target = engine.job_target(BUCKET, hub.bucket)
    cfg = RunConfig(
        data=DataConfig(max_train_examples=64),
        train=TrainConfig(epochs=200, max_length=32, max_minutes=5, evals_per_epoch=1, learning_rate=1e-4),
    )
    note = engine.submit_job(cfg, "cpu-basic", target, TOKEN)

    def training() -> Any:
        (view,) = engine.jobs(target, TOKEN)
        run = view.run
        return run if run is not None and any(e.get("type") == EventType.TRAIN.value for e in run.events()) else None

    run = _wait(training)
    engine.cancel_job(note, TOKEN)
    assert jobs.stage(note.job_id, "alice", TOKEN) == "CANCELED"
    stopped = _wait(lambda: next((r for r in _engine(hub).runs() if r.name == note.run_name and r.status.finished), None))
    assert stopped.status.value == "stopped"  # SIGTERM became a Stop at the next step, not a killed run
    assert (stopped.out_dir / RESUME_DIR / "state.pt").is_file()  # resumable
    assert run.run_id == stopped.run_id


def test_a_sweep_on_jobs_is_one_job_for_every_point_and_a_bad_point_is_a_message_first(
    hub: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--bucket", BUCKET, "--bucket-dir", str(hub.bucket), "--runs-dir", str(hub.bucket / "runs")]
    argv = ["sweep", "--on", "hf-jobs", *flags, "--flavor", "a10g-small", "--minutes-per-run", "5", *SMALL]
    assert main([*argv, "--grid", "lr=1e-5,3e-5,1e-4", "--dry-run"]) == 0
    (plan,) = _lines(capsys)
    assert plan["type"] == "job_plan" and plan["timeout"] == (3 * 5 + jobs.STARTUP_MINUTES) * 60  # 3 runs, one after another
    assert plan["estimated_cost_usd"] == round(1.00 * plan["timeout"] / 3600, 2)
    assert "exec python -m ftui sweep" in plan["command"][2]
    sweep = jobs.sweep_from_json(plan["command"][plan["command"].index("--sweep-config") + 1])
    assert sweep.values == (("lr", "1e-5,3e-5,1e-4"),) and sweep.sweep_id.startswith("sweep-job-")
    assert main([*argv, "--grid", "lr=abc", "--dry-run"]) == 2
    (error,) = _lines(capsys)
    assert error["type"] == "error" and error["message"].startswith("The sweep needs fixing"), error
    assert main([*argv, "--grid", "lr=" + ",".join(f"{i}e-5" for i in range(1, 22)), "--dry-run"]) == 2
    assert "at most 20 runs" in _lines(capsys)[0]["message"]
    assert not hub.jobs and not (hub.bucket / jobs.CODE_DIR).exists()


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ({"canPay": True, "auth": {"type": "access_token", "accessToken": {"role": "read"}}}, "cannot start Jobs"),
        ({"canPay": False, "auth": {"type": "access_token", "accessToken": {"role": "write"}}}, "no payment method"),
    ],
)
def test_a_token_without_jobs_or_an_account_without_payment_is_refused_before_anything_is_staged(
    hub: Any, who: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.who = who
    assert main(_argv(hub.bucket, "--flavor", "a10g-small", "--max-minutes", "5", *SMALL)) == 2
    (line,) = _lines(capsys)
    assert line["type"] == "error" and message in line["message"], line
    assert not hub.jobs and not (hub.bucket / jobs.CODE_DIR).exists()


@pytest.mark.parametrize(
    ("stage", "message", "said"),
    [
        ("ERROR", "Job timeout", "ran past its time limit"),
        ("ERROR", "exit code -9", "was killed (exit code -9): out of memory"),
        ("ERROR", "OOMKilled", "was killed (OOMKilled)"),
        ("ERROR", "exit code 1", "The job failed (exit code 1); the end of its logs follows"),
        ("ERROR", "", "The job failed (no message from Jobs)"),
        ("CANCELED", "", "cancelled; its run stopped at a step and keeps a snapshot"),
        ("DELETED", "gone", "The job ended as DELETED (gone)"),
    ],
)
def test_each_way_a_job_ends_says_what_it_means_for_the_run(stage: str, message: str, said: str) -> None:
    assert said in jobs.ending(stage, message)


def test_cli_resume_on_jobs_dry_run_plans_the_runs_continuation(hub: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from ftui.config import RunConfig, TrainConfig
    from tests.helpers import stopped_run_record

    run_id = "20260101-000000-abcdef"  # a stopped run in the runs folder on the bucket, with its snapshot
    stopped_run_record(hub.bucket / "runs", run_id, RunConfig(train=TrainConfig(epochs=2, max_length=32)))  # no cap
    argv = _argv(hub.bucket, "--resume", run_id, "--flavor", "a10g-small", "--dry-run")
    assert main(argv) == 2
    assert "A Jobs run needs a time cap" in _lines(capsys)[0]["message"]
    assert main([*argv, "--max-minutes", "7"]) == 0
    (plan,) = _lines(capsys)
    command = plan["command"]
    assert plan["resume"] == run_id and command[command.index("--resume") + 1] == run_id
    sent = json.loads(command[command.index("--run-config") + 1])
    assert sent["train"]["max_minutes"] == 7 and sent["train"]["epochs"] == 2  # the run's own settings, this job's cap
    assert plan["timeout"] == (7 + jobs.STARTUP_MINUTES) * 60 and plan["estimated_cost_usd"] == round(plan["timeout"] / 3600, 2)
    assert main(_argv(hub.bucket, "--resume", "no-such-run", "--flavor", "a10g-small", "--max-minutes", "7", "--dry-run")) == 2
    assert "No run 'no-such-run'" in _lines(capsys)[0]["message"]
    assert not hub.jobs

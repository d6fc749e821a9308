"""Where to run (ftui/ui/jobs_panel.py): the hardware list with prices and their source, the estimate and who pays
before Start, which token pays (never the Space owner's), and the followed job's line in the Train tab's status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ftui import jobs
from ftui.engine_jobs import JobView
from ftui.ui import jobs_panel
from tests.fake_jobs_hub import BUCKET, TOKEN, serving

LIVE = jobs.HardwareList((jobs.Flavor("cpu-basic", 0.01), jobs.Flavor("a10g-small", 1.0)), "list_jobs_hardware")


def _note(**changes: Any) -> jobs.JobNote:
    base = {"job_id": "abc123", "namespace": "alice", "url": "https://huggingface.co/jobs/alice/abc123",
            "flavor": "a10g-small", "estimated_cost_usd": 0.42, "run_name": "job-a10g-small-1", "user": "",
            "submitted_at": 0.0}  # fmt: skip
    return jobs.JobNote(**{**base, **changes})


def test_the_hardware_dropdown_shows_each_price_and_prefers_a_small_gpu() -> None:
    assert jobs_panel.flavor_choices(LIVE) == [("cpu-basic — $0.01/h", "cpu-basic"), ("a10g-small — $1.00/h", "a10g-small")]
    assert jobs_panel.default_flavor(LIVE) == "a10g-small"
    assert jobs_panel.default_flavor(jobs.fallback_hardware()) == "t4-small"


def test_the_estimate_is_price_times_the_cap_plus_startup_and_says_where_prices_came_from() -> None:
    text = jobs_panel.estimate_text(LIVE, "a10g-small", 45, "alice (the token you pasted)")
    assert "**Up to $1.00** for this run" in text  # $1.00/h x (45 + 15) min
    assert "live from Hugging Face" in text and "**Pays:** alice (the token you pasted)" in text
    table = jobs_panel.estimate_text(jobs.fallback_hardware("offline"), "a100-large", 45, "")
    assert f"shipped table of {jobs.HARDWARE_TABLE_DATE} (offline), not live" in table and "**Up to $2.50**" in table
    assert "nobody yet: paste a token" in table
    assert "needs a time cap" in jobs_panel.estimate_text(LIVE, "a10g-small", 0, "alice")
    sweep = jobs_panel.estimate_text(LIVE, "a10g-small", 45, "alice", per_run=True)
    assert "**Up to $0.75 per run** of the sweep" in sweep and "**plus $0.25 once**" in sweep
    assert jobs_panel.estimate_text(LIVE, "a10g-small", 45, "alice", problem="Jobs are not set up").startswith("⚠ Jobs")


@pytest.mark.parametrize(
    ("stage", "run", "said"),
    [
        ("SCHEDULING", None, "**queued: waiting for the hardware**"),
        ("RUNNING", None, "**starting: installing, loading the data and the model**"),
        ("RUNNING", "a run", "**running**"),
        ("ERROR", None, "**error**"),
        ("unknown", None, "stage unknown (paste the token"),
    ],
)
def test_the_jobs_stage_is_in_the_status_in_words(stage: str, run: Any, said: str) -> None:
    line = jobs_panel.job_line(JobView(_note(), stage, run))
    assert said in line and "job `abc123` ([job page](https://huggingface.co/jobs/alice/abc123))" in line
    assert "up to $0.42, billed to alice" in line


def test_a_failed_jobs_line_says_what_it_means_and_shows_the_end_of_its_logs_as_text() -> None:
    logs = ("Traceback (most recent call last):", "**not bold** [link](http://evil.test)")
    line = jobs_panel.job_line(JobView(_note(), "ERROR", None, "Job timeout", logs))
    assert "ran past its time limit" in line
    assert "```text\nTraceback (most recent call last):\n**not bold** [link](http://evil.test)\n```" in line
    hostile = jobs_panel.job_line(JobView(_note(url="javascript:alert(1)", flavor="**x**"), "RUNNING", None))
    assert "job page" not in hostile and "\\*\\*x\\*\\*" in hostile  # no link from a non-http URL; names escaped


def _engine(tmp_path: Path, bucket: Path, **env: str) -> Any:
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.settings import Settings

    settings = Settings.from_env({"FTUI_BUCKET": BUCKET, "FTUI_BUCKET_DIR": str(bucket), "FTUI_RUNS_STORAGE": "network", **env})
    return Engine(runs_dir=bucket / "runs", hub_status=HubStatus(True, "the fake Hub"), settings=settings)


def test_the_pasted_token_or_the_sign_in_pays_and_on_a_space_never_the_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(tmp_path, monkeypatch) as hub:  # HF_TOKEN is set in this process, as a Space owner's would be
        laptop = _engine(tmp_path, hub.bucket)
        assert laptop.paying_token("hf_pasted", "hf_oauth") == ("hf_pasted", "the token you pasted")
        assert laptop.paying_token(None, "hf_oauth") == ("hf_oauth", "your Hugging Face sign-in")
        assert laptop.paying_token(None, None) == (TOKEN, "this machine's token (HF_TOKEN or hf auth login)")
        for env in ({"SPACE_ID": "alice/ftui"}, {"FTUI_OAUTH": "1"}, {"FTUI_AUTH": "u:p"}):
            assert _engine(tmp_path, hub.bucket, **env).paying_token(None, None) == (None, "")


def test_the_estimate_names_the_paying_account_or_why_it_cannot_pay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    with serving(tmp_path, monkeypatch) as hub:
        engine = _engine(tmp_path, hub.bucket, SPACE_ID="alice/ftui")
        with gr.Blocks():
            token_box = gr.Textbox()
            place = jobs_panel.build(engine, token_box, "t")
        assert place.estimate_of(jobs_panel.HERE, "a10g-small", 10, TOKEN) == ""
        text = place.estimate_of(jobs_panel.JOBS, "a10g-small", 10, TOKEN)
        assert "**Pays:** alice (the token you pasted)" in text and "live from Hugging Face" in text
        assert "**Up to $0.42**" in text  # the fake's a10g-small: $0.016667/min
        assert "nobody yet" in place.estimate_of(jobs_panel.JOBS, "a10g-small", 10, "")  # a Space: HF_TOKEN is not yours
        hub.who = {"canPay": False, "auth": {"type": "access_token", "accessToken": {"role": "write"}}}
        engine._jobs_state().payers.clear()  # whoami is cached per token: ask again
        assert "no payment method" in place.estimate_of(jobs_panel.JOBS, "a10g-small", 10, TOKEN)
        unset = jobs_panel.Place(_engine(tmp_path, hub.bucket, FTUI_BUCKET=""), token_box, None, None, None, None, False)
        assert "Jobs are not set up on this app" in unset.estimate_of(jobs_panel.JOBS, "a10g-small", 10, TOKEN)


def test_a_signed_in_visitor_pays_with_their_own_sign_in_and_one_without_the_jobs_scope_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradio as gr

    from ftui.config import RunConfig, TrainConfig

    with serving(tmp_path, monkeypatch) as hub:
        monkeypatch.setenv("HF_TOKEN", "hf_theSpaceOwnersToken")  # on a Space: the owner's (the fake Hub refuses it)
        monkeypatch.setattr(jobs, "_SCRIPT", "exit 0")  # the job itself does nothing here
        engine = _engine(tmp_path, hub.bucket, SPACE_ID="owner/ftui", FTUI_OAUTH="1")
        with gr.Blocks():
            token_box = gr.Textbox()
            place = jobs_panel.build(engine, token_box, "t")
        alice = gr.OAuthProfile({"preferred_username": "alice", "name": "Alice", "profile": "", "picture": ""})
        values = {place.where: jobs_panel.JOBS, place.flavor: "cpu-basic", place.minutes: 5, token_box: ""}
        cfg = RunConfig(train=TrainConfig(epochs=1))
        no_scope = gr.OAuthToken(token=TOKEN, scope="openid profile", expires_at=0)
        assert "'jobs' scope is missing" in place.submit(values, cfg, alice, no_scope)
        assert "'jobs' scope is missing" in place.estimate_of(jobs_panel.JOBS, "cpu-basic", 5, "", no_scope)
        assert "nobody yet" in place.estimate_of(jobs_panel.JOBS, "cpu-basic", 5, "")  # the owner's HF_TOKEN never pays
        assert not hub.jobs
        signed = gr.OAuthToken(token=TOKEN, scope="openid profile jobs", expires_at=0)
        assert "alice (your Hugging Face sign-in)" in place.estimate_of(jobs_panel.JOBS, "cpu-basic", 5, "", signed)
        said = place.submit(values, cfg, alice, signed)
        assert said.startswith("✓ Submitted job") and "billed to alice" in said, said
        view = engine.followed_job(engine.viewer("alice"))
        assert view is not None and view.note.user == "alice" and view.note.namespace == "alice"
        assert engine.followed_job(engine.viewer("bob")) is None  # another visitor follows nothing of alice's
        (job,) = hub.jobs.values()
        command = job.spec["command"]
        assert json.loads(command[command.index("--run-config") + 1])["user"] == "alice"  # her workspace on the bucket


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with serving(tmp_path, monkeypatch) as fake:
        yield fake


def test_resume_in_the_runs_tab_goes_to_jobs_when_chosen_else_here(hub: Any) -> None:
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.settings import Settings
    from tests.helpers import stopped_run_record

    run_id = "20260101-000000-abcdef"
    stopped_run_record(hub.bucket / "runs", run_id)
    env = {"FTUI_BUCKET": BUCKET, "FTUI_BUCKET_DIR": str(hub.bucket), "FTUI_RUNS_STORAGE": "network"}
    engine = Engine(runs_dir=hub.bucket / "runs", hub_status=HubStatus(True, "the fake Hub"), settings=Settings.from_env(env))
    place = jobs_panel.Place(engine, "token", "where", "flavor", "minutes", None, False)  # widgets stand in as keys
    here: list[Any] = []
    on_resume = place.resume("pick", lambda *args: here.append(args) or "resumed here")
    values = {"pick": run_id, "token": TOKEN, "where": jobs_panel.HERE, "flavor": "cpu-basic", "minutes": 2}
    assert on_resume(values) == "resumed here" and here == [(run_id, TOKEN, None)]
    assert "needs a time cap" in on_resume({**values, "where": jobs_panel.JOBS, "minutes": 0}) and not hub.jobs
    text = on_resume({**values, "where": jobs_panel.JOBS})
    (job,) = hub.jobs.values()
    assert text.startswith(f"{jobs_panel.OK} Submitted job `{job.id}` to resume it on cpu-basic") and "billed to alice" in text
    command = job.spec["command"]
    assert command[command.index("--resume") + 1] == run_id and job.spec["timeoutSeconds"] == (2 + jobs.STARTUP_MINUTES) * 60
    jobs.cancel(job.id, "alice", TOKEN)  # its placeholder snapshot would not load: nothing more to see in it

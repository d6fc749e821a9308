"""Workspaces with sign-in: each user sees and controls their own runs and queue items, admins everything, anonymous
visitors the showcase runs; without sign-in nothing changes. Engine-level (the UI only passes who asks)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import wind_down

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.errors import FtuiError
from ftui.hub import HubStatus
from ftui.rows import RunRow
from ftui.runs import RunStatus
from ftui.settings import Settings
from ftui.store import Store
from ftui.workspace import ANONYMOUS, LOCAL, Viewer, Workspaces, round_robin, run_folder

TFIDF = RunConfig(DataConfig(), ModelConfig(), TrainConfig(), kind="baseline", baseline="tfidf")
SIGNED_IN = Settings(oauth=True, admins=("carol",), max_queue_per_user=2)


def make_engine(runs_dir: Path, settings: Settings = SIGNED_IN):
    from ftui.engine import Engine

    return Engine(runs_dir=runs_dir, hub_status=HubStatus(False, "offline (tests)"), settings=settings)


def trained(engine, viewer: Viewer, name: str):
    """A completed TF-IDF baseline run started by `viewer` (seconds on the demo data)."""
    run = engine.start_run(replace(TFIDF, train=replace(TFIDF.train, run_name=name)), viewer=viewer)
    assert run.done.wait(120) and engine.join(30)
    assert run.status == RunStatus.COMPLETED, run.error
    return run


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    """An engine with sign-in on and one finished run each for alice and bob."""
    runs_dir = tmp_path_factory.mktemp("workspace") / "runs"
    eng = make_engine(runs_dir)
    alice, bob = eng.viewer("alice"), eng.viewer("bob")
    a, b = trained(eng, alice, "alice-run"), trained(eng, bob, "bob-run")
    yield eng, a, b
    wind_down(eng)


# ------------------------------------------------------------------------------------------------- the rules
def test_viewers_without_sign_in_are_everybody_and_with_it_named_users():
    off = Workspaces(Settings())
    assert off.viewer("alice") == LOCAL and off.default() == LOCAL  # local use: one shared workspace, as always
    on = Workspaces(SIGNED_IN)
    assert on.viewer("alice") == Viewer("alice", admin=False, scoped=True)
    assert on.viewer("carol").admin
    assert on.viewer(None) == ANONYMOUS and on.default() == ANONYMOUS
    assert on.viewer("../etc") == ANONYMOUS  # a username names a folder: nothing else passes


def test_a_signed_in_users_runs_live_in_their_own_folder(tmp_path):
    assert run_folder(tmp_path, "r1", "alice") == tmp_path / "users" / "alice" / "r1"
    assert run_folder(tmp_path, "r1", "") == tmp_path / "r1"


def test_round_robin_takes_turns_between_users():
    items = [("a1", "alice"), ("a2", "alice"), ("b1", "bob"), ("a3", "alice")]
    # alice trained last, bob never: bob's oldest item goes first, though alice queued earlier
    assert round_robin(items, {"alice": 100.0}) == "b1"
    assert round_robin(items, {"alice": 100.0, "bob": 200.0}) == "a1"
    assert round_robin([("x", ""), ("y", "")], {}) == "x"  # one user (or none): the queue's own order
    assert round_robin([], {}) is None


def test_the_store_keeps_a_showcase_mark_across_header_saves(tmp_path):
    store = Store(tmp_path)
    rec = RunRow(run_id="r1", name="n", status=RunStatus.COMPLETED, config={}, started_at=1.0, out_dir=str(tmp_path))
    store.save_run(rec)
    store.update("r1", showcase=True)
    store.save_run(replace(rec, name="renamed"))  # a worker re-saving its header never clears the admin's mark
    assert store.header("r1").showcase is True
    store.update("r1", showcase=False)
    assert store.header("r1").showcase is False


def test_the_store_caps_one_users_waiting_runs_atomically(tmp_path):
    store = Store(tmp_path)
    mine = [(f"i{k}", {"user": "alice"}, "") for k in range(3)]
    assert store.enqueue(mine[:2], cap=20, user_cap=2) == 2
    assert store.enqueue(mine[2:], cap=20, user_cap=2) == 0  # a third waiting run of alice's is refused
    assert store.enqueue([("j", {"user": "bob"}, "")], cap=20, user_cap=2) == 3  # bob's count is his own


# ------------------------------------------------------------------------------------------------- the engine
def test_each_user_sees_only_their_own_runs_and_admins_see_all(workspace):
    eng, a, b = workspace
    alice, bob, carol = eng.viewer("alice"), eng.viewer("bob"), eng.viewer("carol")
    assert [r.run_id for r in eng.runs(alice)] == [a.run_id]
    assert [r.run_id for r in eng.runs(bob)] == [b.run_id]
    assert {r.run_id for r in eng.runs(carol)} == {a.run_id, b.run_id}
    assert eng.runs(ANONYMOUS) == []
    assert eng.get_run(a.run_id, bob) is None
    assert a.out_dir == eng.runs_dir / "users" / "alice" / a.run_id and (a.out_dir / "run.json").exists()
    assert [k for _, k in eng.predict_choices(alice)] == [f"run:{a.run_id}"]


HIDDEN = "not one you can see"
UNKNOWN = "Unknown model"


@pytest.mark.parametrize(
    ("action", "refusal"),
    [
        (lambda e, r, v: e.rename_run(r, "mine now", v), HIDDEN),
        (lambda e, r, v: e.set_note(r, "<a href=//evil.test>x</a>", v), HIDDEN),
        (lambda e, r, v: e.delete_run(r, v), HIDDEN),
        (lambda e, r, v: e.export_zip(r, v), HIDDEN),
        (lambda e, r, v: e.resume_run(r, None, v), HIDDEN),
        (lambda e, r, v: e.export_onnx(r, True, v), HIDDEN),
        (lambda e, r, v: e.run_record(r, v), HIDDEN),
        (lambda e, r, v: e.test_predictions(r, v), HIDDEN),
        (lambda e, r, v: e.predict("a fine film", f"run:{r}", viewer=v), UNKNOWN),
        (lambda e, r, v: e.explain("a fine film", f"run:{r}", viewer=v), UNKNOWN),
    ],
    ids=["rename", "note", "delete", "export", "resume", "onnx", "record", "predictions", "predict", "explain"],
)
def test_another_users_run_is_refused_as_if_it_did_not_exist(workspace, action, refusal):
    eng, a, _ = workspace
    for who in (eng.viewer("bob"), ANONYMOUS):
        with pytest.raises(FtuiError, match=refusal):
            action(eng, a.run_id, who)
    assert eng.get_run(a.run_id, LOCAL).name == "alice-run" and eng.get_run(a.run_id, LOCAL).note == ""
    assert a.out_dir.exists()


def test_a_showcase_run_is_read_only_for_everyone_but_its_owner(workspace):
    eng, a, _ = workspace
    alice, bob = eng.viewer("alice"), eng.viewer("bob")
    with pytest.raises(FtuiError, match="Only an admin"):
        eng.set_showcase(a.run_id, True, alice)  # owners do not publish: an admin does
    eng.set_showcase(a.run_id, True, eng.viewer("carol"))
    try:
        assert [r.run_id for r in eng.runs(ANONYMOUS)] == [a.run_id]
        assert set(eng.predict("a fine film", f"run:{a.run_id}", viewer=ANONYMOUS)) == set(a.label_names)
        assert eng.run_record(a.run_id, bob)["name"] == "alice-run"  # its evaluation, read-only
        with pytest.raises(FtuiError, match="belongs to another user"):
            eng.rename_run(a.run_id, "bob's now", bob)
        with pytest.raises(FtuiError, match="belongs to another user"):
            eng.delete_run(a.run_id, bob)
        assert eng.rename_run(a.run_id, "alice-run", alice).name == "alice-run"  # the owner still manages it
    finally:
        eng.set_showcase(a.run_id, False, eng.viewer("carol"))
    assert eng.runs(ANONYMOUS) == []


def test_anonymous_visitors_cannot_start_anything(workspace):
    eng, _, _ = workspace
    with pytest.raises(FtuiError, match="Sign in with Hugging Face to train"):
        eng.start_run(TFIDF, viewer=ANONYMOUS)
    with pytest.raises(FtuiError, match="Sign in"):
        eng.start_run(TFIDF)  # a call that names nobody is anonymous when sign-in is on (least privilege)


def test_another_users_run_folder_is_not_a_checkpoint(workspace):
    eng, a, _ = workspace
    theirs = replace(TFIDF, kind="finetune", model=ModelConfig(source="local", checkpoint=str(a.out_dir / "model")))
    with pytest.raises(FtuiError, match="another user's run"):
        eng.start_run(theirs, viewer=eng.viewer("bob"))


def test_queue_items_belong_to_their_user_and_one_user_waits_at_most_the_cap(workspace, monkeypatch):
    eng, _, _ = workspace
    alice, bob = eng.viewer("alice"), eng.viewer("bob")
    monkeypatch.setattr(eng.manager, "dispatch", lambda: None)  # the items stay queued: nothing starts under the test
    try:
        mine = [replace(TFIDF, user="alice"), replace(TFIDF, user="alice")]
        a1, a2 = eng.manager.enqueue(mine, None, user_cap=eng.workspaces.queue_cap(alice))
        (b1,) = eng.manager.enqueue([replace(TFIDF, user="bob")], None, user_cap=eng.workspaces.queue_cap(bob))
        with pytest.raises(FtuiError, match="at most 2"):
            eng.manager.enqueue([replace(TFIDF, user="alice")], None, user_cap=eng.workspaces.queue_cap(alice))
        assert [q.item_id for q in eng.queued(alice)] == [a1.item_id, a2.item_id]
        assert [q.item_id for q in eng.queued(bob)] == [b1.item_id]
        with pytest.raises(FtuiError, match="no longer in the queue"):
            eng.cancel_queued(a1.item_id, bob)
        with pytest.raises(FtuiError, match="no longer in the queue"):
            eng.move_queued(a2.item_id, -1, bob)
        assert eng.clear_queue(bob) == 1  # only bob's own
        assert [q.item_id for q in eng.queued(eng.viewer("carol"))] == [a1.item_id, a2.item_id]
    finally:
        eng.manager.clear()


def test_runs_come_back_from_their_users_folders_after_a_restart(workspace):
    eng, a, b = workspace
    again = make_engine(eng.runs_dir)
    got = {r.run_id: r for r in again.runs(again.viewer("carol"))}
    assert got[a.run_id].out_dir == a.out_dir and got[b.run_id].out_dir == b.out_dir
    assert got[a.run_id].status == RunStatus.COMPLETED and got[a.run_id].config.user == "alice"
    assert [r.run_id for r in again.runs(again.viewer("bob"))] == [b.run_id]


def test_without_sign_in_nothing_changes(tmp_path):
    eng = make_engine(tmp_path / "runs", Settings())
    run = trained(eng, eng.viewer("whoever"), "local-run")
    assert run.config.user == "" and run.out_dir == eng.runs_dir / run.run_id
    assert [r.run_id for r in eng.runs()] == [run.run_id]
    assert eng.rename_run(run.run_id, "renamed").name == "renamed"  # no viewer named: everybody, as before


def test_sign_in_is_on_with_hf_oauth_or_ftui_oauth_and_the_shared_workspace_warning_goes():
    space = Settings.from_env({"SPACE_ID": "me/ftui", "OAUTH_CLIENT_ID": "id"})  # hf_oauth: true sets OAUTH_CLIENT_ID
    assert space.oauth and space.page_notices() == []
    assert len(Settings.from_env({"SPACE_ID": "me/ftui"}).page_notices()) == 1  # without it: every visitor controls all
    local = Settings.from_env({"FTUI_OAUTH": "1", "FTUI_ADMINS": "carol, dave", "FTUI_MAX_QUEUE_PER_USER": "5"})
    assert (local.oauth, local.admins, local.max_queue_per_user) == (True, ("carol", "dave"), 5)
    assert not Settings.from_env({"OAUTH_CLIENT_ID": "id", "FTUI_OAUTH": "0"}).oauth  # the operator can turn it off
    assert not Settings.from_env({}).oauth


def test_the_command_line_is_the_operators_even_with_sign_in_on(tmp_path, monkeypatch, capsys):
    """A shell on the Space (OAUTH_CLIENT_ID set) trains as before: sign-in rules the app's visitors, not the CLI."""
    import json

    from ftui.cli import main

    monkeypatch.setenv("OAUTH_CLIENT_ID", "space-client-id")
    assert main(["baseline", "--offline", "--kind", "tfidf", "--runs-dir", str(tmp_path)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["test_accuracy"] > 0.5, last
    (run,) = Store(tmp_path).runs()
    assert run.user == "" and (tmp_path / run.run_id / "run.json").exists()

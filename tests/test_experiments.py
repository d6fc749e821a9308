"""Runs table rows, filtering and config diffs from stored records."""

from dataclasses import replace

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.experiments import config_diff, flatten, run_row, runs_frame


def rec(run_id, name, cfg: RunConfig, status="completed", acc=0.8):
    result = {"test_accuracy": acc, "test_macro_f1": acc and acc - 0.01, "best_eval": {"accuracy": 0.85}}
    return {"run_id": run_id, "name": name, "status": status, "config": cfg.to_dict(), "started_at": 100.0,
            "ended_at": 160.5, "result": result, "note": ""}  # fmt: skip


BASE = RunConfig(DataConfig(), ModelConfig(), TrainConfig())


def test_run_row_fields():
    cfg = RunConfig(
        DataConfig(source="hub", dataset_id="nyu-mll/glue", config_name="sst2"),
        ModelConfig(source="hub", checkpoint="distilbert/distilbert-base-uncased", freeze_depth=2),
        TrainConfig(learning_rate=3e-5),
    )
    row = run_row(rec("r1", "first", cfg))
    assert row["dataset"] == "nyu-mll/glue / sst2" and row["checkpoint"] == "distilbert/distilbert-base-uncased"
    assert row["freeze"] == 2 and row["lr"] == 3e-5 and row["duration_s"] == 60.5
    assert row["best_eval_acc"] == 0.85 and row["test_acc"] == 0.8 and row["status"] == "completed"


def test_runs_frame_filters_and_orders_newest_first():
    records = [
        rec("r1", "alpha", BASE),
        rec("r2", "beta", BASE, status="failed", acc=None),
        rec("r3", "gamma", replace(BASE, model=ModelConfig(freeze_depth=4))),
    ]
    frame = runs_frame(records)
    assert frame["run_id"].tolist() == ["r3", "r2", "r1"]
    assert runs_frame(records, status="failed")["name"].tolist() == ["beta"]
    assert runs_frame(records, query="GAMMA")["run_id"].tolist() == ["r3"]
    assert runs_frame(records, query="nothing-like-this").empty


def test_config_diff_shows_only_differences():
    a = rec("r1", "lr-small", BASE)
    b = rec("r2", "lr-big", replace(BASE, train=replace(BASE.train, learning_rate=1e-3, epochs=1.0)))
    d = config_diff([a, b])
    assert sorted(d["field"]) == ["train.epochs", "train.learning_rate"]
    row = d.set_index("field").loc["train.learning_rate"]
    assert row["lr-small"] == "5e-05" and row["lr-big"] == "0.001"
    assert config_diff([a, rec("r3", "lr-small", BASE)]).empty  # same config: nothing differs


def test_flatten():
    assert flatten({"a": {"b": 1, "c": [1, 2]}}) == {"a.b": 1, "a.c": (1, 2)}


def test_queue_frame_lists_waiting_runs_in_order():
    from ftui.experiments import queue_frame
    from ftui.run_queue import QueuedRun

    items = [
        QueuedRun("i1", 1, replace(BASE, train=replace(BASE.train, run_name="first", learning_rate=3e-5)), 0.0, True),
        QueuedRun("i2", 2, replace(BASE, kind="baseline", baseline="tfidf"), 0.0, False),
    ]
    frame = queue_frame(items)
    assert list(frame["#"]) == [1, 2] and list(frame["name"]) == ["first", "(generated at start)"]
    assert list(frame["method"]) == ["fine-tune", "TF-IDF"] and list(frame["queued by"]) == ["this app", "another process"]
    assert frame["lr"][0] == 3e-5


def test_a_label_shape_other_than_classes_is_named_in_the_method():
    from ftui.config import RunConfig
    from ftui.experiments import run_row

    rec = {"run_id": "r", "config": RunConfig().to_dict(), "result": {"task": "regression", "test_rmse": 0.3}}
    row = run_row(rec)
    assert row["method"].endswith("· regression") and row["test_acc"] is None
    rec["result"] = {"task": "multi_label", "test_accuracy": 0.5, "test_macro_f1": 0.6}
    assert run_row(rec)["method"].endswith("· multi-label") and run_row(rec)["test_acc"] == 0.5
    rec["result"] = {"test_accuracy": 0.8}
    assert "·" not in run_row(rec)["method"]


def test_the_shown_table_blanks_what_baselines_do_not_use_and_writes_points_and_learning_rates():
    """Case: baseline rows showed a learning rate, batch, epochs and a checkpoint; "vs base" was a raw -0.3438; the
    learning rate was cut to "0.00"."""
    from ftui.experiments import display_frame

    tfidf = replace(BASE, kind="baseline", baseline="tfidf")
    embeddings = replace(BASE, kind="baseline", baseline="embeddings")
    nbsvm = replace(BASE, kind="baseline", baseline="nbsvm")
    tuned = replace(BASE, train=TrainConfig(learning_rate=3e-4))
    frame = runs_frame([rec("b1", "tfidf", tfidf, acc=0.9), rec("b2", "emb", embeddings, acc=0.85),
                        rec("b3", "nbsvm", nbsvm, acc=0.8), rec("t1", "tuned", tuned, acc=0.5562)])  # fmt: skip
    shown = display_frame(frame).set_index("run")
    assert shown.loc["tuned", "vs base"] == "-34.4 pts" and shown.loc["tuned", "lr"] == "3e-4"
    for name in ("tfidf", "emb"):
        assert shown.loc[name, "lr"] == "" and shown.loc[name, ["batch", "epochs", "frozen"]].isna().all()
        assert shown.loc[name, "vs base"] == ""
    assert shown.loc["tfidf", ["model", "max len"]].isna().all()  # TF-IDF reads no model and no tokens
    assert shown.loc["nbsvm", ["model", "max len"]].isna().all()  # nor does NBSVM
    assert shown.loc["emb", "model"] == "all-MiniLM-L6-v2 (packaged)"  # the frozen encoder it embeds with

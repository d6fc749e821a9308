"""Figures and status text from a fixed run log."""

from ftui.config import RunConfig
from ftui.plots import accuracy_figure, loss_figure, status_markdown
from ftui.progress import Progress
from ftui.runs import Run, RunStatus

EVENTS = [
    {"type": "start", "total_steps": 4},
    {"type": "train", "step": 1, "loss": 0.9},
    {"type": "train", "step": 2, "loss": 0.7},
    {"type": "eval", "step": 2, "eval_loss": 0.8, "eval_accuracy": 0.6, "eval_macro_f1": 0.55},
    {"type": "train", "step": 3, "loss": 0.5},
    {"type": "eval", "step": 4, "eval_loss": 0.6, "eval_accuracy": 0.7, "eval_macro_f1": 0.69},
]


def test_loss_figure_has_train_and_eval_series():
    fig = loss_figure(EVENTS, "rev")
    train, ev = fig.data
    assert list(train.x) == [1, 2, 3] and list(train.y) == [0.9, 0.7, 0.5]
    assert list(ev.x) == [2, 4] and list(ev.y) == [0.8, 0.6]
    assert fig.layout.uirevision == "rev"  # zoom survives live updates


def test_accuracy_figure_series():
    fig = accuracy_figure(EVENTS)
    acc, f1 = fig.data
    assert list(acc.y) == [0.6, 0.7] and list(f1.y) == [0.55, 0.69]


def test_empty_log_gives_empty_series():
    assert all(len(t.x) == 0 for t in loss_figure([]).data)


def test_status_text(tmp_path):
    run = Run("r", "demo-run", RunConfig(), tmp_path)
    run.set_progress(phase="training", device="cpu", step=2, total_steps=4, epoch=0.5, samples_per_s=12.5, eta_s=65)
    text = status_markdown(run.snapshot())
    assert "step 2/4 (50%)" in text and "ETA 1m05s" in text and "12.5 samples/s" in text
    assert "cached" not in text
    run.set_progress(prefix_cache_mb=41.6)
    assert "frozen layers cached (42 MB)" in status_markdown(run.snapshot())
    run.finish(RunStatus.FAILED, "Out of GPU memory at batch size 64")
    assert "Out of GPU memory" in status_markdown(run.snapshot())
    assert "No run yet" in status_markdown(None)


def test_length_histogram_marks_the_max_length_and_the_share_it_cuts():
    from ftui.plots import cut_share, length_histogram

    lengths = [10] * 6 + [200] * 4
    assert cut_share(lengths, 128) == 0.4
    fig = length_histogram(lengths, "tokens", 128)
    assert "40% are longer than 128 tokens" in fig.layout.title.text
    assert any(s.x0 == 128 for s in fig.layout.shapes)
    assert "longer" not in length_histogram(lengths, "words", 128).layout.title.text  # words: no cut to speak of


def test_short_runs_draw_markers_and_whole_steps():
    from ftui.plots import accuracy_figure, loss_figure

    events = [{"type": "train", "step": 1, "loss": 0.7}, {"type": "eval", "step": 1, "eval_loss": 0.6, "eval_accuracy": 0.5,
              "eval_macro_f1": 0.4}]  # fmt: skip
    loss = loss_figure(events)
    assert "markers" in loss.data[0].mode  # a single point is visible
    assert loss.layout.xaxis.tickformat == "d" and loss.layout.xaxis.dtick == 1
    assert accuracy_figure(events).layout.xaxis.dtick == 1
    many = [{"type": "train", "step": i, "loss": 1.0} for i in range(1, 200)]
    assert loss_figure(many).data[0].mode == "lines" and loss_figure(many).layout.xaxis.dtick is None


def test_status_shows_class_weights_when_the_run_uses_them():
    from ftui.plots import status_markdown
    from ftui.runs import RunSnapshot, RunStatus

    snap = RunSnapshot("r1", "r", 1, RunStatus.RUNNING, (), Progress(class_weights=(0.55, 5.5)), None, {}, 0.0, None)
    assert "Class weights in the loss: 0.55, 5.5" in status_markdown(snap)
    plain = RunSnapshot("r1", "r", 1, RunStatus.RUNNING, (), Progress(), None, {}, 0.0, None)
    assert "Class weights" not in status_markdown(plain)


def test_sweep_figure_has_an_axis_per_setting_and_names_the_best():
    from ftui.plots import sweep_figure

    rows = [
        {"name": "a", "point": {"learning_rate": "1e-05", "checkpoint": "packaged"}, "val_score": 0.7, "completed": True},
        {"name": "b", "point": {"learning_rate": "3e-05", "checkpoint": "org/m"}, "val_score": 0.9, "completed": True},
        {"name": "c", "point": {"learning_rate": "1e-04", "checkpoint": "org/m"}, "val_score": None, "completed": False},
    ]
    fig = sweep_figure(rows, "accuracy")
    (trace,) = fig.data
    labels = [d.label for d in trace.dimensions]
    assert labels == ["learning_rate", "checkpoint", "val accuracy"]
    assert list(trace.dimensions[0]["values"]) == [1e-05, 3e-05]  # the unscored run is not drawn
    assert list(trace.dimensions[1]["ticktext"]) == ["packaged", "org/m"] and list(trace.dimensions[1]["values"]) == [0, 1]
    assert "Best: b" in fig.layout.title.text
    assert "no run has a validation score" in sweep_figure(rows[2:], "accuracy").layout.title.text


def test_sweep_figure_writes_learning_rates_as_typed_and_skips_settings_that_did_not_vary():
    """Case: the learning rate axis read "300µ" and a constant epochs value had an axis of its own."""
    from ftui.plots import sweep_figure

    rows = [
        {"name": "a", "point": {"learning_rate": "3e-4", "epochs": "1"}, "val_score": 0.7, "completed": True},
        {"name": "b", "point": {"learning_rate": "1e-4", "epochs": "1"}, "val_score": 0.9, "completed": True},
    ]
    (trace,) = sweep_figure(rows, "accuracy").data
    assert [d.label for d in trace.dimensions] == ["learning_rate", "val accuracy"]
    assert list(trace.dimensions[0]["ticktext"]) == ["1e-4", "3e-4"]
    assert list(trace.dimensions[0]["tickvals"]) == [1e-4, 3e-4]


def test_finished_runs_report_their_best_score_without_so_far():
    """Case: "Best validation accuracy so far" stayed on finished runs."""
    import time

    from ftui.plots import status_markdown
    from ftui.runs import RunSnapshot, RunStatus

    def snap(status: RunStatus) -> RunSnapshot:
        return RunSnapshot(run_id="r1", name="run", version=1, status=status, events=(),
                           progress=Progress(best_eval_accuracy=0.9), error=None, result={}, started_at=time.time(),
                           ended_at=None)  # fmt: skip

    assert "Best validation accuracy so far: **0.900**" in status_markdown(snap(RunStatus.RUNNING))
    for status in (RunStatus.COMPLETED, RunStatus.STOPPED, RunStatus.FAILED):
        text = status_markdown(snap(status))
        assert "Best validation accuracy: **0.900**" in text and "so far" not in text

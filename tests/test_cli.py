"""`python -m ftui train` runs the engine headless and prints JSON lines."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, assert_scores_match_predictions, offline_engine

from ftui.cli import build_parser


def test_cli_trains_and_streams_json_lines(tiny_bert_dir, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "ftui",
        "train",
        "--offline",
        "--dataset",
        "demo",
        "--checkpoint",
        str(tiny_bert_dir),
        "--freeze-depth",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--lr",
        "1e-3",
        "--runs-dir",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and "train" in kinds and "eval" in kinds and kinds[-2:] == ["test", "end"]
    assert events[0]["trainable_params"] > 0
    end = events[-1]
    assert end["status"] == "completed"
    assert_scores_match_predictions(offline_engine(tmp_path), Path(end["run_dir"]).name, end)
    assert (tmp_path / end["run_dir"].split("/")[-1] / "model" / "labels.json").exists()

    # The same store, read back by `runs list` / `runs show`.
    listed = subprocess.run(
        [sys.executable, "-m", "ftui", "runs", "list", "--json", "--runs-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rows = json.loads(listed.stdout)
    assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["freeze"] == 1
    assert rows[0]["test_acc"] == round(end["test_accuracy"], 4)
    shown = subprocess.run(
        [sys.executable, "-m", "ftui", "runs", "show", rows[0]["run_id"], "--json", "--runs-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rec = json.loads(shown.stdout)
    assert [e["type"] for e in rec["events"]] == kinds[:-1]  # every event the run printed, minus the CLI's "end"
    assert rec["config"]["train"]["batch_size"] == 32 and rec["label_names"] == ["negative", "positive"]
    missing = subprocess.run(
        [sys.executable, "-m", "ftui", "runs", "show", "nope", "--json", "--runs-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "0 runs match" in missing.stdout


def test_cli_reports_bad_settings_as_json(tmp_path):
    cmd = [sys.executable, "-m", "ftui", "train", "--offline", "--lr", "-1", "--runs-dir", str(tmp_path)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    err = json.loads(out.stdout.strip().splitlines()[-1])
    assert err["type"] == "error" and "learning rate" in err["message"]


def test_cli_sources_are_inferred(tmp_path):
    from ftui.cli_flags import data_config, model_config

    args = build_parser().parse_args(
        ["train", "--dataset", "glue", "--config", "sst2", "--checkpoint", "distilbert/distilbert-base-uncased"]
    )
    assert data_config(args).source == "hub" and data_config(args).config_name == "sst2"
    assert model_config(args).source == "hub"
    args = build_parser().parse_args(["train", "--dataset", str(tmp_path), "--checkpoint", str(tmp_path)])
    assert data_config(args).source == "local" and model_config(args).source == "local"


@pytest.mark.slow  # a pip install: 14 s
def test_pip_install_gives_an_ftui_command_that_works_from_any_folder(tmp_path):
    """`pip install .` installs the package (demo data inside) and an `ftui` command; neither needs the repository."""
    import os

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(REPO)],
        check=True,
        capture_output=True,
    )
    assert (target / "ftui" / "assets" / "demo_reviews.csv").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "FTUI_OFFLINE": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import ftui, ftui.data; print(ftui.__file__); print(ftui.data.DEMO_DATASET)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(line.startswith(str(target)) for line in where)  # the installed copy, not the repository
    help_text = subprocess.run([str(target / "bin" / "ftui"), "train", "--help"], cwd=elsewhere, env=env,
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    # every option states its default; the batch's depends on the device (issue 26)
    said = " ".join(help_text.split())  # argparse wraps its help lines
    assert "16 on CPU, 64 on a GPU" in said and "(default: 128)" in said and "--max-length" in said
    out = subprocess.run(
        [sys.executable, "-m", "ftui", "train", "--offline", "--dataset", "demo", "--max-steps", "2", "--evals-per-epoch", "1",
         "--runs-dir", str(elsewhere / "runs")],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    end = json.loads(out.stdout.strip().splitlines()[-1])
    assert end["status"] == "completed", out.stderr[-2000:]
    listed = subprocess.run([str(target / "bin" / "ftui"), "runs", "list", "--json", "--runs-dir", str(elsewhere / "runs")],
                            cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert len(json.loads(listed)) == 1


def test_model_and_dataset_code_are_trusted_separately():
    from ftui.cli import build_parser
    from ftui.cli_flags import data_config, model_config

    args = build_parser().parse_args(["train", "--trust-remote-code"])
    assert model_config(args).trust_remote_code and not data_config(args).trust_remote_code
    args = build_parser().parse_args(["train", "--trust-dataset-code"])
    assert data_config(args).trust_remote_code and not model_config(args).trust_remote_code
    args = build_parser().parse_args(["train", "--class-weights", "balanced"])
    assert args.class_weights == "balanced"


def test_train_flags_are_generated_from_the_config_fields():
    """Every TrainConfig field is a `train` flag (written once, in the dataclass) and parses back into the config."""
    from dataclasses import fields

    from ftui.cli_flags import TRAIN_NOT_FLAGS, train_config, train_flag
    from ftui.config import TrainConfig

    parser = build_parser()
    flags = {a for action in parser._subparsers._group_actions[0].choices["train"]._actions for a in action.option_strings}
    assert {train_flag(f.name) for f in fields(TrainConfig) if f.name not in TRAIN_NOT_FLAGS} <= flags
    given = ["--lr", "0.001", "--epochs", "2.5", "--no-frozen-cache", "--schedule", "two-phase", "--head-lr", "0.01",
             "--long-text", "head_tail", "--run-name", "x", "--max-steps", "7"]  # fmt: skip
    args = parser.parse_args(["train", *given])
    cfg = train_config(args, learning_rate=args.lr, batch_size=8, processes=1)
    assert (cfg.learning_rate, cfg.epochs, cfg.frozen_cache, cfg.schedule) == (0.001, 2.5, False, "two-phase")
    assert (cfg.head_learning_rate, cfg.long_text, cfg.run_name, cfg.max_steps) == (0.01, "head_tail", "x", 7)
    assert (cfg.tune_threshold, cfg.batch_size) == (True, 8)
    defaults = train_config(parser.parse_args(["train"]), learning_rate=5e-5, batch_size=16, processes=1)
    assert defaults == TrainConfig()  # no flag given: the config's own defaults


def test_adapt_and_baseline_flags_are_generated_from_the_config_fields():
    """`adapt` and `baseline` flags come from AdaptConfig, RunConfig and TrainConfig fields as `train`'s do: the same
    names and defaults as when they were written by hand, and every AdaptConfig field but the corpus is one."""
    from dataclasses import fields

    from ftui.cli_flags import ADAPT_FLAGS, ADAPT_NOT_FLAGS, Flag, adapt_config, baseline_config, flag_name
    from ftui.config import AdaptConfig, DataConfig, ModelConfig, RunConfig, TrainConfig

    parser = build_parser()
    flags = {a for action in parser._subparsers._group_actions[0].choices["adapt"]._actions for a in action.option_strings}
    assert {flag_name(f, ADAPT_FLAGS.get(f.name, Flag())) for f in fields(AdaptConfig) if f.name not in ADAPT_NOT_FLAGS} <= flags
    assert {"--corpus", "--split", "--from-scratch", "--cased", "--lr", "--block-length", "--corpus-config"} <= flags
    assert adapt_config(parser.parse_args(["adapt"])) == RunConfig(kind="mlm", train=TrainConfig(epochs=1.0))
    given = ["adapt", "--corpus", "imdb", "--corpus-config", "plain_text", "--split", "unsupervised", "--text-column", "t",
             "--from-scratch", "--vocab-size", "1000", "--min-frequency", "3", "--cased", "--preset", "small",
             "--mask-rate", "0.2", "--whole-word", "--holdout", "0.1", "--lr", "1e-3", "--batch-size", "8",
             "--epochs", "2", "--max-steps", "5", "--block-length", "64", "--evals-per-epoch", "2", "--seed", "7",
             "--run-name", "mlm", "--checkpoint", "packaged"]  # fmt: skip
    cfg = adapt_config(parser.parse_args(given))
    assert cfg.adapt == AdaptConfig(corpus_source="hub", corpus="imdb", corpus_config="plain_text", corpus_split="unsupervised",
                                    text_column="t", mode="scratch", mask_rate=0.2, whole_word=True, vocab_size=1000,
                                    min_frequency=3, lowercase=False, preset="small", holdout=0.1)  # fmt: skip
    assert cfg.train == TrainConfig(learning_rate=1e-3, batch_size=8, epochs=2.0, max_steps=5, max_length=64,
                                    evals_per_epoch=2, seed=7, run_name="mlm")  # fmt: skip
    base = baseline_config(parser.parse_args(["baseline"]))
    assert (base.kind, base.baseline, base.train, base.model) == ("baseline", "tfidf", TrainConfig(), ModelConfig())
    assert base.data == DataConfig()
    args = parser.parse_args(["baseline", "--kind", "nbsvm", "--max-length", "64", "--seed", "3", "--run-name", "b"])
    assert (baseline_config(args).baseline, baseline_config(args).train) == (
        "nbsvm",
        TrainConfig(max_length=64, seed=3, run_name="b"),
    )


@pytest.mark.slow  # a process start, a timing and a tiny run: 15-50 s on the loaded 2-core machine
def test_train_estimate_prints_how_long_before_the_run_starts(tiny_bert_dir, tmp_path):
    cmd = [sys.executable, "-m", "ftui", "train", "--offline", "--dataset", "demo", "--checkpoint", str(tiny_bert_dir),
           "--epochs", "1", "--batch-size", "32", "--max-length", "32", "--runs-dir", str(tmp_path), "--estimate"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    estimate, start = events[0], events[1]
    assert estimate["type"] == "estimate" and start["type"] == "start"
    assert estimate["steps"] == start["total_steps"] == 8  # 256 demo texts at batch 32
    assert 0 < estimate["epoch_s"] <= estimate["run_s"] and "for the run on this CPU" in estimate["line"]
    assert (tmp_path / "calibration.json").exists()  # kept for the app and the next command on this machine


def test_ctrl_c_asks_the_run_to_stop_once_and_a_second_quits_at_once(monkeypatch, capfd):
    import signal
    import threading

    from ftui import cli

    class Asked:  # what the handler touches of a Run
        def __init__(self) -> None:
            self.stop_event = threading.Event()
            self.asks = 0

        def request_stop(self) -> None:
            self.asks += 1
            self.stop_event.set()

    def quit_now(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr("os._exit", quit_now)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        run = Asked()
        cli.stop_on_signals(run, force_quit=True)
        handler = signal.getsignal(signal.SIGINT)
        handler(signal.SIGINT, None)
        assert run.asks == 1 and "stopping at the next step" in capfd.readouterr().err
        with pytest.raises(SystemExit) as ended:
            handler(signal.SIGINT, None)
        assert ended.value.code == 130 and "quit before the run stopped" in capfd.readouterr().err
        # under torchrun or in a job: every signal asks again, nothing quits (torchrun's shutdown repeats them)
        ranked = Asked()
        cli.stop_on_signals(ranked, force_quit=False)
        for _ in range(3):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert ranked.asks == 4 and capfd.readouterr().err == ""
    finally:
        for sig, was in before.items():
            signal.signal(sig, was)

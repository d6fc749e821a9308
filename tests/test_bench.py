"""The benchmark scripts keep their contract: one invocation, three recipes, a final JSON line with the ratios."""

import json
import subprocess
import sys

import pytest
from helpers import REPO, assert_fraction_of


def run_script(*args: str) -> dict:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a bench's contract: 8-24 s, run by CI after the default suite
def test_train_speed_contract(tiny_bert_dir):
    out = run_script(
        "bench/train_speed.py", "--device", "cpu", "--synthetic", "96", "--model", str(tiny_bert_dir),
        "--max-steps", "3", "--batch-size", "16", "--max-length", "64",
    )  # fmt: skip
    assert out["device"].startswith("cpu") and out["real_labels"] is False
    assert set(out["recipes"]) == {"tutorial", "tuned_trainer", "ftui"}
    for name, r in out["recipes"].items():
        assert r["samples_per_s"] > 0 and r["epoch_s"] > 0 and r["peak_mem_mb"] > 0, name
        assert r["steps"] == 3 and "accuracy" not in r  # random labels: no accuracy
    ft, tut = out["recipes"]["ftui"], out["recipes"]["tutorial"]
    assert out["ratio_vs_tutorial"] == round(ft["samples_per_s"] / tut["samples_per_s"], 2)
    assert out["ratio_vs_tuned_trainer"] is not None


@pytest.mark.slow  # a bench's contract: 8-24 s, run by CI after the default suite
def test_train_speed_reports_accuracy_with_real_labels(tiny_bert_dir, tmp_path):
    import pandas as pd

    from ftui.readers import read_table

    demo = read_table(REPO / "assets" / "demo_reviews.csv")
    for split, part in (("train", demo[:200]), ("validation", demo[200:260]), ("test", demo[260:])):
        part[["text", "label"]].to_csv(tmp_path / f"{split}.csv", index=False)
    assert len(pd.read_csv(tmp_path / "test.csv")) == 60
    out = run_script(
        "bench/train_speed.py", "--device", "cpu", "--data", str(tmp_path), "--model", str(tiny_bert_dir),
        "--recipes", "tuned_trainer,ftui", "--batch-size", "32", "--max-length", "64",
    )  # fmt: skip
    assert out["real_labels"] is True and out["ratio_vs_tutorial"] is None
    for r in out["recipes"].values():
        assert r["train_samples"] == 200
        assert_fraction_of(r["accuracy"], 60)  # right answers out of the 60 test reviews


@pytest.mark.slow
def test_mlm_speed_contract():
    out = run_script("bench/mlm_speed.py", "--docs", "200", "--steps", "2", "--batch", "8", "--block", "32")
    assert set(out["recipes"]) == {"tutorial", "tuned_trainer", "ftui"}
    assert all(r["tokens_per_s"] > 0 and r["samples_per_s"] > 0 for r in out["recipes"].values())
    r = out["recipes"]
    assert out["ratio_vs_tutorial"] == round(r["ftui"]["tokens_per_s"] / r["tutorial"]["tokens_per_s"], 2)


@pytest.mark.slow  # a bench's contract: 8-24 s, run by CI after the default suite
def test_latency_contract_every_runtime_and_explanations(tiny_bert_dir, tmp_path):
    from ftui.config import ModelConfig
    from ftui.modeling import build_model, load_tokenizer, save_classifier

    cfg = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    names = ["negative", "positive"]
    save_classifier(build_model(cfg, names).eval(), load_tokenizer(cfg), tmp_path / "m", names)
    out = run_script(
        "bench/latency.py", "--model-dir", str(tmp_path / "m"), "--calls", "5", "--batch", "64", "--labels",
        "--explain", "2", "--no-first-point",
    )  # fmt: skip
    assert set(out["onnx"]) == {"export_s", "fp32", "int8"}
    for kind in ("fp32", "int8"):
        row = out["onnx"][kind]
        assert row["p50_ms"] > 0 and row["batch_reviews_per_s"] > 0
        # ONNX's accuracy differs from PyTorch's by at most the share of labels where the two disagree
        gap = 1 - row["label_agreement_vs_torch_fp32"]
        assert abs(row["accuracy"] - out["accuracy"]["fp32"]) <= gap + 1e-4, (row, out["accuracy"])
        assert_fraction_of(row["accuracy"], 64, digits=4)  # right answers out of the 64 texts
        assert out[f"ratio_single_p50_onnx_{kind}_vs_torch"] == round(out["single_ms"]["ftui"]["p50"] / row["p50_ms"], 2)
    assert out["onnx"]["fp32"]["label_agreement_vs_torch_fp32"] >= 0.99  # the same graph
    assert set(out["explain_ms_64_tokens"]) == {"ig", "fast"} and out["explain_ms_64_tokens"]["ig"]["p50"] > 0


@pytest.mark.slow  # a bench's contract: 8-24 s, run by CI after the default suite
def test_long_text_contract(tmp_path):
    """bench/long_text.py on a tiny stand-in for rotten_tomatoes: one run per mode, ratios against truncation."""
    import pandas as pd

    for split, n in (("train", 60), ("validation", 30), ("test", 30)):
        pd.DataFrame({"text": [f"{'good' if i % 2 else 'bad'} film number {i}" for i in range(n)],
                      "label": [i % 2 for i in range(n)]}).to_parquet(tmp_path / f"{split}.parquet")  # fmt: skip
    out = run_script("bench/long_text.py", "--data", str(tmp_path), "--lengths", "16", "--modes", "truncate", "chunks",
                     "--train-docs", "8", "--eval-docs", "4", "--snippets", "6", "--majority", "4")  # fmt: skip
    assert [(r["mode"], r["status"]) for r in out["runs"]] == [("truncate", "completed"), ("chunks", "completed")]
    chunks = out["runs"][1]
    assert chunks["train_rows"] > 8  # each long document became several windows
    assert out["ratios"][0]["mode"] == "chunks" and out["ratios"][0]["time_vs_truncate"] > 0


@pytest.mark.slow
def test_scale_out_contract(tmp_path, tiny_bert_dir):
    """bench/scale_out.py on a tiny stand-in: the CLI with 1 process and under torchrun with 2, ratios against 1."""
    import pandas as pd

    for split, n in (("train", 64), ("validation", 16), ("test", 16)):
        pd.DataFrame({"text": [f"{'good' if i % 2 else 'bad'} film number {i}" for i in range(n)],
                      "label": [i % 2 for i in range(n)]}).to_parquet(tmp_path / f"{split}.parquet")  # fmt: skip
    out = run_script("bench/scale_out.py", "--data", str(tmp_path), "--checkpoint", str(tiny_bert_dir), "--train", "64",
                     "--batch-size", "16", "--max-length", "16")  # fmt: skip
    assert [(r["processes"], r["status"], r["steps"]) for r in out["runs"]] == [(1, "completed", 4), (2, "completed", 4)]
    assert out["ratios"][0]["processes"] == 2 and out["ratios"][0]["wall_speedup"] > 0


@pytest.mark.slow  # a bench's contract: about 15 s (seven tiny runs), run by CI after the default suite
def test_defaults_table_contract(tmp_path, tiny_bert_dir):
    """bench/defaults.py on tiny stand-ins for rotten_tomatoes and trec: each candidate against the default with an
    interval and a paired test, candidates that cannot change the input marked as the default's run, one JSON line."""
    import pandas as pd

    (tmp_path / "rotten_tomatoes").mkdir()
    for split, n in (("train", 40), ("validation", 20), ("test", 20)):
        frame = pd.DataFrame({"text": [f"{'good' if i % 2 else 'bad'} film number {i}" for i in range(n)],
                              "label": [i % 2 for i in range(n)]})  # fmt: skip
        frame.to_parquet(tmp_path / "rotten_tomatoes" / f"{split}.parquet")
    (tmp_path / "trec").mkdir()
    fine = [f"C{k}:f{k}" for k in range(12)]
    rows = [{"text": f"what is question {i} about topic {i % 12} ?", "coarse_label": fine[i % 12][:2],
             "fine_label": fine[i % 12]} for i in range(240)]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "trec" / "train.parquet")
    out = run_script("bench/defaults.py", "--data", str(tmp_path), "--sets", "short", "multi", "--checkpoint",
                     str(tiny_bert_dir), "--short-train", "20", "--short-val", "10", "--multi-rows", "40", "20", "20",
                     "--epochs", "1", "--lr", "1e-3", "--work", str(tmp_path / "work"))  # fmt: skip
    short, multi = out["cells"]["short"], out["cells"]["multi"]
    assert out["datasets"]["short"]["cut_share"] == 0.0 and short["head_tail"]["same"].startswith("no train text")
    assert short["balanced"]["same"].startswith("balanced classes")  # 10 and 10: every weight is 1
    assert short["default"]["metric"] == "accuracy" and short["default"]["test_size"] == 20
    assert_fraction_of(short["default"]["value"], 20)
    assert short["default"]["low"] <= short["default"]["value"] <= short["default"]["high"]
    assert short["two_phase"]["test"] == "exact McNemar" and isinstance(short["two_phase"]["noise"], bool)
    assert out["datasets"]["multi"]["task"] == "multi_label" and out["datasets"]["multi"]["labels"] == 12
    assert multi["default"]["metric"] == "micro-F1" and multi["balanced"]["test"] == "paired bootstrap"
    assert set(multi["two_phase+balanced"]["vs"]) == {"balanced"}  # the combination against its other half too
    again = run_script("bench/defaults.py", "--data", str(tmp_path), "--sets", "short", "--checkpoint",
                       str(tiny_bert_dir), "--short-train", "20", "--short-val", "10", "--epochs", "1", "--lr", "1e-3",
                       "--work", str(tmp_path / "work"))  # fmt: skip
    assert again["cells"]["short"]["default"] == short["default"]  # a completed run in --work is reused, not retrained

"""Run kinds as recipes: one table answers what each kind checks, reads, names, keeps, serves and exports."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from helpers import REPO

from ftui.config import AdaptConfig, ModelConfig, RunConfig, TrainConfig, validate_run
from ftui.recipes import KINDS, RECIPES, recipe_of
from ftui.settings import Settings

FINETUNE = RunConfig()
TFIDF = replace(FINETUNE, kind="baseline", baseline="tfidf")
EMBEDDINGS = replace(FINETUNE, kind="baseline", baseline="embeddings")
ADAPT = replace(FINETUNE, kind="mlm", adapt=AdaptConfig(corpus="demo"))
SCRATCH = replace(ADAPT, adapt=replace(ADAPT.adapt, mode="scratch"))


def test_every_kind_is_a_row_and_old_records_read_as_fine_tunes():
    assert KINDS == ("finetune", "baseline", "mlm")
    assert all(RECIPES[k].kind == k for k in KINDS)
    assert recipe_of({"kind": "baseline"}) is RECIPES["baseline"]
    assert recipe_of({}) is RECIPES["finetune"]  # a record from before kinds


@pytest.mark.parametrize(
    ("cfg", "reads", "gpu_free", "serves_base", "onnx", "adapts", "method"),
    [
        (FINETUNE, True, False, True, True, False, "fine-tune"),
        (replace(FINETUNE, train=TrainConfig(schedule="two-phase")), True, False, True, True, False, "head→fine-tune"),
        (TFIDF, False, True, False, False, False, "TF-IDF"),
        (replace(TFIDF, baseline="nbsvm"), False, True, False, False, False, "NBSVM"),
        (EMBEDDINGS, True, False, False, False, False, "embeddings"),
        (ADAPT, True, False, False, False, True, "MLM (adapt)"),
        (SCRATCH, False, False, False, False, True, "MLM from scratch"),
    ],
)
def test_each_recipe_answers_for_its_kind(cfg, reads, gpu_free, serves_base, onnx, adapts, method):
    r = recipe_of(cfg)
    assert (r.reads_checkpoint(cfg), r.gpu_free(cfg), r.serves_base, r.onnx, r.adapts) == (
        reads, gpu_free, serves_base, onnx, adapts
    )  # fmt: skip
    assert r.method(cfg) == method


def test_zero_gpu_admits_exactly_the_runs_that_need_no_gpu():
    zero = Settings(zero_gpu=True)
    admitted = {c.kind + ":" + c.baseline for c in (FINETUNE, TFIDF, EMBEDDINGS, ADAPT)
                if not zero.admit_training(recipe_of(c).gpu_free(c))}  # fmt: skip
    assert admitted == {"baseline:tfidf"}
    assert Settings().admit_training(False) == []  # anywhere else everything trains


def test_kind_rules_come_from_the_table():
    assert any("run kind must be one of finetune, baseline, mlm" in m for m in validate_run(replace(FINETUNE, kind="rl")))
    assert any("baseline must be one of" in m for m in validate_run(replace(TFIDF, baseline="svm")))
    assert any("only fine-tuning runs" in m for m in validate_run(replace(TFIDF, train=TrainConfig(processes=2))))
    assert validate_run(replace(FINETUNE, train=TrainConfig(processes=2))) == []
    assert validate_run(ADAPT) == [] and validate_run(TFIDF) == []


def test_generated_names_say_what_the_run_is():
    names = {k: recipe_of(c).name(c, "minilm", "demo", "120000") for k, c in
             {"ft": replace(FINETUNE, model=ModelConfig(freeze_depth=2)), "tfidf": TFIDF, "emb": EMBEDDINGS,
              "mlm": ADAPT, "scratch": SCRATCH}.items()}  # fmt: skip
    assert names == {
        "ft": "minilm-demo-f2-120000",
        "tfidf": "baseline-tfidf-demo-120000",
        "emb": "baseline-embeddings-minilm-demo-120000",
        "mlm": "mlm-minilm-demo-120000",
        "scratch": f"mlm-scratch-{SCRATCH.adapt.preset}-demo-120000",
    }


def test_the_code_asks_the_table_instead_of_branching_on_run_kinds():
    """At most three branches on a run's kind outside the table (issue 27): new kinds plug in as rows."""
    kind = "[\"'](finetune|baseline|mlm)[\"']"
    pattern = re.compile(rf"(==|!=)\s*{kind}|{kind}\s*(==|!=)|kind\s+(not\s+)?in\s*\(\s*{kind}")
    hits = []
    for path in sorted((REPO / "ftui").rglob("*.py")):
        if path.name == "recipes.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert len(hits) <= 3, "\n".join(hits)

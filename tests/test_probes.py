"""No existence probes (issue 22, case 5): with an allowlist on, a refused path gets the same message whether it is
missing, an existing folder, a checkpoint folder or a file, and the disk is not consulted before the refusal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ftui.config import AdaptConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.hub import HubStatus
from ftui.settings import Settings
from ftui.sweeps import SweepConfig


@pytest.fixture()
def locked(tmp_path: Path) -> Engine:
    settings = Settings(allowed_checkpoints=("packaged",), allowed_datasets=("demo",))
    return Engine(runs_dir=tmp_path / "runs", hub_status=HubStatus(False, "offline"), settings=settings)


@pytest.fixture()
def paths(tmp_path: Path, tiny_bert_dir: Path) -> list[str]:
    """A missing path, an empty folder, a real checkpoint folder and a real text file."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "corpus.txt").write_text("a document\nanother one\n")
    return [str(tmp_path / "missing"), str(tmp_path / "empty"), str(tiny_bert_dir), str(tmp_path / "corpus.txt")]


def _said(call, path: str) -> str:
    with pytest.raises(FtuiError) as err:
        call(path)
    return str(err.value).replace(path, "<path>")


def _all_same(call, paths: list[str]) -> str:
    said = {p: _said(call, p) for p in paths}
    assert len(set(said.values())) == 1, said
    return next(iter(said.values()))


def test_sweep_checkpoints_are_refused_alike_wherever_they_point(locked, paths, monkeypatch):
    base = RunConfig(DataConfig(), ModelConfig(), TrainConfig(epochs=1))
    monkeypatch.setattr(Path, "is_dir", lambda self: pytest.fail(f"the disk was asked about {self}"))
    said = _all_same(lambda p: locked.plan_sweep(base, SweepConfig(values=(("checkpoint", p),))), paths)
    assert "checkpoint '<path>' is not allowed here; choose one of: packaged" in said


def test_adapt_corpus_paths_are_refused_alike_wherever_they_point(locked, paths):
    run = RunConfig(DataConfig(), ModelConfig(), TrainConfig(epochs=1), kind="mlm")
    start = _all_same(lambda p: locked.start_run(replace(run, adapt=AdaptConfig(corpus_source="file", corpus=p))), paths)
    preview = _all_same(lambda p: locked.preview_corpus(AdaptConfig(corpus_source="file", corpus=p), ModelConfig(), 64), paths)
    assert "dataset '<path>' is not allowed here" in start and "dataset '<path>' is not allowed here" in preview.lower()


def test_model_and_run_checkpoints_are_refused_alike_wherever_they_point(locked, paths):
    summary = _all_same(lambda p: locked.model_summary(ModelConfig(source="local", checkpoint=p)), paths)
    start = _all_same(lambda p: locked.start_run(RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=p))), paths)
    assert "checkpoint '<path>' is not allowed here" in summary.lower() and "checkpoint '<path>' is not allowed here" in start

"""Real-data check: the packaged MiniLM fine-tuned on rotten_tomatoes from ../shared/data (skips when absent)."""

import json
import os
import time

import pytest
from conftest import SHARED_DATA

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.runs import RunStatus

RT = SHARED_DATA / "rotten_tomatoes"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not RT.exists(), reason="../shared/data/rotten_tomatoes absent")]


def test_minilm_on_rotten_tomatoes(engine):
    epochs = float(os.environ.get("FTUI_RT_EPOCHS", "1"))
    cfg = RunConfig(
        data=DataConfig(source="local", dataset_id=str(RT)),
        model=ModelConfig(),
        train=TrainConfig(epochs=epochs, batch_size=32, learning_rate=1e-4, max_length=64, evals_per_epoch=2),
    )
    t0 = time.perf_counter()
    run = engine.start_run(cfg)
    assert run.done.wait(3600), "the run did not finish within an hour"
    wall = time.perf_counter() - t0
    assert run.status == RunStatus.COMPLETED, run.error
    r = run.result
    print(
        json.dumps(
            {
                "test_accuracy": r["test_accuracy"],
                "test_macro_f1": r["test_macro_f1"],
                "train_seconds": r["train_seconds"],
                "wall_seconds": round(wall, 1),
                "epochs": epochs,
                "best_eval": r["best_eval"],
            }
        )
    )
    # Pang & Lee's classical models reach about 77%; a fine-tuned MiniLM must beat that.
    assert r["test_accuracy"] >= 0.77

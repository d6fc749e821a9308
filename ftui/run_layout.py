"""The run folder's layout: where a run keeps its best model, its resume snapshot and its test predictions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: runs.py must not depend on this module's importers
    from ftui.runs import Run

MODEL_DIR = "model"  # the best checkpoint (a classifier, a baseline or an adapted masked LM), swapped in whole
RESUME_DIR = "resume"  # the resume snapshot of the last optimizer step (weights, optimizer, data order, RNG)
SNAPSHOT_FILE = "state.pt"  # the one file inside RESUME_DIR
PREDICTIONS_FILE = "test_predictions.parquet"  # every test row with its prediction, for error analysis
CLASSIFIER_MARK = "labels.json"  # a saved classifier has it (an adapted masked LM has config.json only)
STOP_FILE = "stop-requested"  # written by another host (the app stopping a Jobs run): the owner stops at its next beat


def model_dir(out_dir: Path) -> Path:
    """The folder of the run's best model."""
    return out_dir / MODEL_DIR


def snapshot_path(out_dir: Path) -> Path:
    """The run's resume snapshot file."""
    return out_dir / RESUME_DIR / SNAPSHOT_FILE


def ask_to_stop(out_dir: Path) -> None:
    """Ask whichever process trains the run, on any host that shares the folder, to stop and keep a snapshot."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / STOP_FILE).write_text("stop")


def stop_asked(out_dir: Path) -> bool:
    """Whether a stop was asked through the folder (since the run was last launched)."""
    return (out_dir / STOP_FILE).exists()


def clear_stop(out_dir: Path) -> None:
    """Forget an earlier stop request: a resumed run must not stop at once."""
    (out_dir / STOP_FILE).unlink(missing_ok=True)


def has_classifier(out_dir: Path) -> bool:
    """True when the run folder holds a whole saved classifier (its label names are written last)."""
    return (out_dir / MODEL_DIR / CLASSIFIER_MARK).exists()


def can_resume(run: Run) -> bool:
    """True when a stopped or interrupted run (or one failed by a lost rank) left a resume snapshot."""
    resumable = run.status.value in ("stopped", "interrupted") or (run.status.value == "failed" and run.result.get("resumable"))
    return bool(resumable) and snapshot_path(run.out_dir).exists()

"""Run warnings: what a finished (or starting) run's numbers say the user should act on, as typed events that the
page shows and the CLI prints (below the baseline, texts cut at the max length, epochs cut by the time limit, a
classifier that predicts (almost) no label or one class)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ftui.auto_baseline import VERDICT_WAIT_S
from ftui.events import EvalEvent, EventType, UnknownEvent, WarningEvent, WarningKind, decode_all
from ftui.icons import WARN
from ftui.progress import ShownWarning
from ftui.tasks import Task

log = logging.getLogger(__name__)

CUT_SHARE = 0.2  # share of train texts longer than the max length above which a run warns
LENGTH_SAMPLE = 2000  # train texts tokenized (without truncation) to measure that share
ZERO_F1 = 0.01  # multi-label: a validation micro-F1 at or below this at every evaluation is "about 0"
FEW_LABELS = 0.1  # multi-label: predicted labels below this share of the true ones on test is "almost none"
ONE_CLASS = 0.98  # single-label: one class given to at least this share of the test texts is "one class"


def emit(run: Any, warning: WarningEvent | None) -> None:
    """Log the warning as an event and add it to the run's progress (the page's status shows both)."""
    if warning is None:
        return
    run.log(warning)
    shown = run.snapshot(events=False).progress.warnings
    run.set_progress(warnings=(*shown, ShownWarning(warning.kind.value, warning.message)))


def warnings_of(events: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """A run's warnings from its stored events: [{kind, message}] in order (the CLI's end line); a warning of a kind
    this version does not know is listed as stored."""
    out = []
    for e in decode_all(events):
        if isinstance(e, WarningEvent):
            out.append({"kind": e.kind.value, "message": e.message})
        elif isinstance(e, UnknownEvent) and e.type == EventType.WARNING:
            out.append({"kind": str(e.data.get("kind", "")), "message": str(e.data.get("message", ""))})
    return out


# --------------------------------------------------------------------------------------------------- lengths
def truncation(lengths: Sequence[int], max_length: int, long_text: str, step: int = 0) -> WarningEvent | None:
    """A warning when many texts are longer than the max length, saying what the long-text mode will read."""
    if not lengths or not max_length or long_text == "chunks":
        return None  # chunks read every token of every text
    long = sum(n > max_length for n in lengths)
    share = long / len(lengths)
    if share < CUT_SHARE:
        return None
    what = (
        "cut there: the model never reads the rest"
        if long_text == "truncate"
        else "read as their first and last tokens (head + tail): the middle is skipped"
    )
    return WarningEvent(
        step=step,
        kind=WarningKind.TRUNCATION,
        message=f"{share:.1%} of {len(lengths):,} train texts are longer than the max length ({max_length} tokens) and "
        f"are {what}. Raise the max length (--max-length) or read long texts in chunks (--long-text chunks).",
    )


def check_lengths(run: Any, bundle: Any, tokenizer: Any) -> None:
    """Measure the share of train texts past the max length (a sample, tokenized in full) and warn when large."""
    from ftui.data_report import text_lengths

    t = run.config.train
    if any(isinstance(e, WarningEvent) and e.kind is WarningKind.TRUNCATION for e in decode_all(run.events())):
        return  # a resumed run warned when it started
    try:
        lengths, _ = text_lengths(bundle, tokenizer, LENGTH_SAMPLE)
    except Exception as exc:  # noqa: BLE001 - a warning is a bonus: a tokenizer that cannot do this must not fail the run
        log.warning("could not measure text lengths for run %s: %s", run.run_id, exc)
        return
    emit(run, truncation(lengths, t.max_length, t.long_text))


# ------------------------------------------------------------------------------------------------ time limit
def time_cut(events: Sequence[dict[str, Any]], planned: float, trained: float, minutes: float, step: int) -> WarningEvent | None:
    """A warning when the time cap (a re-planned schedule or the cap itself) ended the run before its epochs."""
    capped = any(e.type in (EventType.TIME_LIMIT, EventType.SCHEDULE) for e in decode_all(events))
    if not capped or trained >= planned - 1e-6:
        return None
    return WarningEvent(
        step=step,
        kind=WarningKind.TIME_LIMIT,
        message=f"The time limit ({minutes:g} min) ended training after {trained:.2f} of the {planned:g} epochs set. "
        "Allow more time (--max-minutes), or train fewer rows (--max-train-examples) or a smaller model.",
    )


# ------------------------------------------------------------------------------------------------ predictions
def predictions(
    task: Task,
    probs: np.ndarray,
    gold: np.ndarray,
    names: Sequence[str],
    threshold: float,
    events: Sequence[dict[str, Any]],
    step: int,
) -> WarningEvent | None:
    """A warning when the classifier says (almost) nothing: multi-label micro-F1 about 0 at every evaluation, (almost)
    no predicted label, or the same labels for (almost) every text; single-label one class for (almost) every text."""
    if task is Task.MULTI:
        f1s = [e.eval_micro_f1 for e in decode_all(events) if isinstance(e, EvalEvent) and e.eval_micro_f1 is not None]
        pred = probs >= threshold
        predicted, true = int(pred.sum()), int((gold >= 0.5).sum())
        # A tuned threshold can turn "no label" into the commonest label for every text: say which it is.
        same, share = _commonest_set(pred)
        one_set = predicted > 0 and share >= ONE_CLASS and _commonest_set(gold >= 0.5)[1] < ONE_CLASS
        labels = ", ".join(n for n, on in zip(names, same, strict=True) if on)
        does = (
            f"it gives {share:.1%} of the test texts the same labels ({labels})" if one_set else "it predicts (almost) no labels"
        )
        if f1s and max(f1s) <= ZERO_F1:
            said = f"Validation micro-F1 was {max(f1s):.3f} at all {len(f1s)} evaluations"
        elif true and predicted < FEW_LABELS * true:
            said = f"The model predicts {predicted:,} labels on the test set, where {true:,} are true"
        elif one_set:
            said = "The model has not learned to tell the texts apart"
        else:
            return None
        return WarningEvent(
            step=step,
            kind=WarningKind.NO_LABELS,
            message=f"{said}: {does}. Train longer or at a higher learning rate (--epochs, --lr), weigh rare labels "
            "(--class-weights balanced), train the head first (--schedule two-phase), or lower the threshold (--threshold).",
        )
    if task is Task.SINGLE and len(probs) and len(set(gold.tolist())) >= 2:
        pred = probs.argmax(-1)
        top = int(np.bincount(pred).argmax())
        share = float((pred == top).mean())
        if share >= ONE_CLASS and float((gold == top).mean()) < ONE_CLASS:
            return WarningEvent(
                step=step,
                kind=WarningKind.ONE_CLASS,
                message=f"The model predicts '{names[top]}' for {share:.1%} of the test texts: it has not learned to tell "
                "the classes apart. Train longer or at another learning rate (--epochs, --lr), or weigh the classes "
                "(--class-weights balanced).",
            )
    return None


def _commonest_set(rows: np.ndarray) -> tuple[np.ndarray, float]:
    """The label set (a 0/1 row) given to most texts, and the share of texts that got it."""
    if not len(rows):
        return np.zeros(rows.shape[-1] if rows.ndim == 2 else 0, dtype=bool), 0.0
    sets, counts = np.unique(rows.astype(bool), axis=0, return_counts=True)
    top = int(counts.argmax())
    return sets[top], float(counts[top] / len(rows))


def below_baseline(run: Any, result: dict[str, Any], step: int) -> WarningEvent | None:
    """A warning when a completed baseline on the same test split and label shape beats this run's test `result` in
    its shape's score (the Runs tab's verdict), saying what tends to help."""
    from ftui.experiments import baseline_verdict

    if run.store is None:
        return None
    try:
        records = [r.to_json() for r in run.store.runs()]  # the run.json shape the verdicts read
    except Exception as exc:  # noqa: BLE001 - the comparison is a bonus; an unreadable store must not fail the run
        log.warning("could not read the store to compare run %s with its baseline: %s", run.run_id, exc)
        return None
    from ftui.significance import pairer, read_predictions

    folders = {**{str(r.get("run_id")): str(r.get("out_dir", "")) for r in records}, run.run_id: str(run.out_dir)}
    paired = pairer(lambda rid: read_predictions(folders[rid]) if rid in folders else None, accuracy_only=True)
    rec = {"run_id": run.run_id, "config": run.config.to_dict(), "result": result}
    verdict = baseline_verdict(rec, records, markdown=False, paired=paired)  # below it even within noise: warned
    if not verdict.startswith(WARN):
        return None
    return WarningEvent(step=step, kind=WarningKind.BELOW_BASELINE, message=verdict.removeprefix(f"{WARN} "))


def after_test(
    run: Any,
    task: Task,
    probs: np.ndarray,
    test: Any,
    metrics: dict[str, Any],
    trained_epochs: float,
    step: int,
) -> None:
    """Every end-of-run warning of a fine-tuning run, from its test predictions and its events."""
    from ftui.data import LABEL
    from ftui.data_report import label_matrix

    t = run.config.train
    events = run.events()
    planned = t.epochs + (t.head_epochs if t.schedule == "two-phase" else 0.0)
    emit(run, time_cut(events, planned, trained_epochs, t.max_minutes, step))
    if task is not Task.REGRESSION:
        gold = label_matrix(test) if task is Task.MULTI else np.asarray(test[LABEL])
        threshold = float(metrics.get("threshold", t.threshold))
        emit(run, predictions(task, probs, gold, run.label_names, threshold, events, step))
    if not all(done.is_set() for done in run.awaits):  # the baseline started beside this run: the score to beat
        run.set_progress(phase="waiting for the TF-IDF baseline fitted beside it (the score to beat)")
        for done in run.awaits:
            done.wait(VERDICT_WAIT_S)
    emit(run, below_baseline(run, {"task": task.value, **metrics}, step))

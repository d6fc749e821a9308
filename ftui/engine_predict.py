"""The engine's prediction facade (mixed into Engine): the models a viewer may use, Predict, Explain, batches, ONNX,
and scoring a run's base checkpoint or a Hub classifier on its test set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftui import hub
from ftui.config import ModelConfig, validate_model
from ftui.data import LABEL, TEXT, TEXT_PAIR
from ftui.errors import FtuiError, ModelError
from ftui.explain import Explanation
from ftui.metrics import compute_metrics
from ftui.modeling import display_name, load_tokenizer
from ftui.onnx_export import OnnxReport, has_export, read_report
from ftui.runner import RunManager
from ftui.serving import PredictionService
from ftui.tasks import TaskInfo
from ftui.workspace import Viewer, Workspaces


def map_labels(theirs: list[str], ours: list[str]) -> dict[str, int] | None:
    """Map another model's label names onto ours: by name (case-insensitive), else LABEL_i / same count by index."""
    low = {n.lower(): i for i, n in enumerate(ours)}
    if all(t.lower() in low for t in theirs):
        return {t: low[t.lower()] for t in theirs}
    if len(theirs) == len(ours):
        return {t: i for i, t in enumerate(theirs)}
    return None


class PredictFacade:
    """Prediction for the UI and the API. Engine provides the state below and the deployment rules (_writable,
    _full_mode, _admit_model, load_data, _seen, _managed, _who)."""

    manager: RunManager
    serving: PredictionService
    predictor: Any
    workspaces: Workspaces
    hub: Any
    device: str

    def score_checkpoint(
        self, run_id: str, hub_id: str | None = None, token: str | None = None, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        """Score the run's test set with its base checkpoint (same seeded head) or a ready fine-tuned Hub classifier."""
        self._full_mode()
        run = self._seen(run_id, viewer)
        if run.result.get("task", "single_label") != "single_label":
            raise FtuiError(
                f"Run '{run.name}' is not a single-label classifier: its base checkpoint has no comparable score here.",
                "Its test metrics and curves are in the run's evaluation above.",
            )
        bundle = self.load_data(run.config.data, token)
        texts = bundle.splits["test"][TEXT]
        if TEXT_PAIR in bundle.splits["test"].column_names:
            raise FtuiError("Baselines for sentence-pair tasks are not supported yet.", "Compare runs in the table instead.")
        gold = bundle.splits["test"][LABEL]
        names = list(run.label_names)
        if hub_id:
            cfg = ModelConfig(source="hub", checkpoint=str(hub_id).strip())
            problems = validate_model(cfg)
            if problems:
                raise ModelError(problems[0] + ".", "Use 'owner/name'.")
            self._admit_model(cfg)
            key = f"hub:{cfg.checkpoint}"

            def load_hub() -> tuple[Any, Any, list[str]]:
                from transformers import AutoModelForSequenceClassification

                try:
                    model = AutoModelForSequenceClassification.from_pretrained(cfg.checkpoint, token=token or None)
                except Exception as exc:
                    raise hub.explain_hub_error(exc, "checkpoint", cfg.checkpoint) from exc
                labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
                return model.to(self.device).eval(), load_tokenizer(cfg, token), labels

            loader = load_hub
        else:
            key, loader = self.serving.versioned(f"base:{run.run_id}")
        probs = self.predictor.predict(key, loader, list(texts), max_length=run.config.train.max_length)
        theirs = list(probs[0].keys()) if probs else []
        mapping = map_labels(theirs, names)
        if mapping is None:
            raise FtuiError(
                f"'{hub_id}' predicts {theirs}, which do not match this run's labels {names}.",
                "Pick a classifier trained on the same labels.",
            )
        preds = [mapping[max(p, key=p.__getitem__)] for p in probs]
        m = compute_metrics(preds, gold)
        return {"model": hub_id or f"{display_name(run.config.model)} (base, untrained head)", **m, "n": len(gold)}

    # -------------------------------------------------------------------------------------------------- predict
    def predict_choices(self, viewer: Viewer | None = None) -> list[tuple[str, str]]:
        """(label, key) of every model Predict offers the viewer, the default first (see PredictionService.choices)."""
        who = self._who(viewer)
        return self.serving.choices(lambda r: self.workspaces.can_see(who, r))

    def _model_key(self, model_key: str | None, viewer: Viewer | None) -> str:
        """The model a request means, when the viewer may use it: the one asked for, else the viewer's default."""
        who = self._who(viewer)
        if model_key is None or model_key == "":
            choices = self.predict_choices(who)
            if not choices:
                raise FtuiError("No trained model yet.", "Train one in the Train tab, then press Refresh here.")
            return choices[0][1]
        key = self.serving.default_key(model_key)  # type-checked
        run = self.manager.get(key.partition(":")[2].split("#")[0].split("@")[0])
        if run is not None and not self.workspaces.can_see(who, run):
            raise FtuiError(f"Unknown model '{key[:100]}'.", "Pick a model from the list (press Refresh after a run ends).")
        return key

    def predict(
        self, text: str, model_key: str | None = None, runtime: str = "pytorch", viewer: Viewer | None = None
    ) -> dict[str, float]:
        """Class probabilities for one text, from a run (default: the best completed run on the data at hand, by
        validation score) or its base checkpoint."""
        if not isinstance(text, str) or not text.strip():  # the text's problem first: it is what the user typed
            raise FtuiError("There is no text to classify.", "Type a review in the box.")
        return self.serving.predict(text, self._model_key(model_key, viewer), runtime)

    def task_info(self, model_key: str | None = None, viewer: Viewer | None = None) -> TaskInfo:
        """How a model's outputs read: class probabilities, label probabilities with a threshold, or a value."""
        return self.serving.task_info(self._model_key(model_key, viewer))

    def predict_many(
        self, texts: list[str], model_key: str | None = None, int8: bool = False, runtime: str = "pytorch",
        viewer: Viewer | None = None,
    ) -> list[dict[str, float]]:  # fmt: skip
        """Class probabilities for many texts, in the input order (bounded; see PredictionService.predict_many)."""
        self.serving.check_batch(texts)  # the texts' problem first: it is what the user gave
        return self.serving.predict_many(texts, self._model_key(model_key, viewer), int8, runtime)

    def explain(self, text: str, model_key: str | None = None, method: str = "ig", viewer: Viewer | None = None) -> Explanation:
        """Token attributions for the class a fine-tuned model predicts (see ftui.explain)."""
        if not isinstance(text, str) or not text.strip():  # the text's problem first: it is what the user typed
            raise FtuiError("There is no text to explain.", "Type a review in the box.")
        return self.serving.explain(text, self._model_key(model_key, viewer), method)  # type: ignore[arg-type]

    def export_onnx(self, run_id: str, int8: bool = True, viewer: Viewer | None = None) -> OnnxReport:
        """ONNX (and int8) export of a finished run, checked against torch on its test set, kept in the run folder."""
        self._writable()
        run = self._managed(run_id, viewer, "export")
        with self.manager.hold(run.run_id, "an ONNX export"):
            if self.manager.get(run.run_id) is None:
                raise FtuiError(f"Run '{run.name}' was just deleted.", "Pick another run.")
            return self.serving.export_onnx(run.run_id, int8)

    def onnx_report(self, run_id: str, viewer: Viewer | None = None) -> OnnxReport | None:
        """The stored check of a run's ONNX export (None when it has none)."""
        run = self._seen(run_id, viewer)
        return read_report(run.out_dir) if has_export(run.out_dir) else None

    def predict_examples(self, model_key: str | None, fallback: list[str], viewer: Viewer | None = None) -> list[str]:
        """Example texts for a model: one per class from its run's test set, else `fallback`."""
        try:
            key = self._model_key(model_key, viewer)
        except FtuiError:
            return fallback
        return self.serving.examples(key, fallback)

    def serve_downloads_from(self, folder: Path) -> None:
        """Write generated downloads into `folder`: the UI passes its web server's own file cache, so each file is
        stored once, under the downloads' byte budget, instead of once here and once more in the server's cache."""
        self.serving.downloads.root = Path(folder)

    def predictions_file(self, frame: Any) -> Path:
        """A batch's predictions as a CSV download (texts cut, the downloads folder's byte budget kept)."""
        return self.serving.predictions_file(frame)

    def batch_texts(self, lines: str | None, path: str | None) -> list[str]:
        """The texts of a batch request, from a file (read under the deployment's caps) or typed lines."""
        return self.serving.batch_texts(lines, path)

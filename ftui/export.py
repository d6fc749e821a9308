"""Exporting a run: a generated model card, a zip of everything needed to use the model, and a push to the Hub."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ftui.config import RunConfig
from ftui.errors import FtuiError, HubError
from ftui.escaping import code_md, escape_md, escape_md_block
from ftui.experiments import run_row
from ftui.files import COMPLETE
from ftui.metrics import per_class, per_label, regression_metrics
from ftui.onnx_export import ONNX_DIR
from ftui.recipes import recipe_of
from ftui.run_layout import MODEL_DIR, PREDICTIONS_FILE
from ftui.tasks import Task, TaskInfo, read_task


def _fmt(x: Any) -> str:
    """A metric: four decimals."""
    return f"{x:.4f}" if isinstance(x, float) else ("-" if x is None else str(x))


def _setting(x: Any) -> str:
    """A hyperparameter as it was typed: 5e-05 stays 5e-05 (not 0.0001), 3.0 epochs is 3, 0.01 is 0.01."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "-" if x is None else str(x)
    return f"{x:g}" if isinstance(x, float) else str(x)


def _seconds(x: Any) -> str:
    if not isinstance(x, (int, float)):
        return "? s"
    return f"{x:.1f} s" if x < 120 else f"{int(x) // 60} min {int(x) % 60} s"


EVAL_COLUMNS = {  # the label shape's metrics, as the model card's evaluation table shows them
    "single_label": (("accuracy", "accuracy"), ("macro_f1", "macro-F1")),
    "multi_label": (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("accuracy", "subset accuracy")),
    "regression": (("rmse", "RMSE"), ("pearson", "Pearson"), ("spearman", "Spearman")),
}


def _evaluation_rows(res: dict[str, Any], best: dict[str, Any]) -> list[str]:
    cols = EVAL_COLUMNS.get(str(res.get("task", "single_label")), EVAL_COLUMNS["single_label"])
    head = " | ".join(name for _, name in cols)
    return [
        f"| split | {head} | loss |",
        "| --- |" + " --- |" * (len(cols) + 1),
        f"| validation (best checkpoint, step {best.get('step', '?')}) | "
        + " | ".join(_fmt(best.get(k)) for k, _ in cols)
        + f" | {_fmt(best.get('loss'))} |",
        "| test | " + " | ".join(_fmt(res.get(f"test_{k}")) for k, _ in cols) + f" | {_fmt(res.get('test_loss'))} |",
    ]


def model_card(rec: dict[str, Any], base_limitations: str = "", repo_id: str = "") -> str:
    """A Hub model card (YAML front matter + markdown) for a finished run record."""
    cfg, res = rec.get("config", {}), rec.get("result", {}) or {}
    row = run_row(rec)
    data, model, train = cfg.get("data", {}), cfg.get("model", {}), cfg.get("train", {})
    base = model.get("checkpoint") if model.get("source") == "hub" else row["checkpoint"]
    dataset = data.get("dataset_id") if data.get("source") == "hub" else row["dataset"]
    labels = rec.get("label_names", [])
    recipe = recipe_of(cfg)
    baseline = recipe.reference
    library = "sklearn" if baseline else "transformers"
    front = ["---", f"library_name: {library}", "pipeline_tag: text-classification", "tags:", "- ftui", "- text-classification"]
    if model.get("source") == "hub" and base and recipe.reads_checkpoint(RunConfig.from_dict(cfg)):
        front += [f"base_model: {json.dumps(str(base))}"]  # JSON strings are YAML strings: no key can be smuggled in
    if data.get("source") == "hub" and dataset:
        front += ["datasets:", f"- {json.dumps(str(dataset))}"]
    if isinstance(res.get("test_accuracy"), float):
        front += [
            "model-index:",
            f"- name: {json.dumps(str(repo_id or rec.get('name', 'model')))}",
            "  results:",
            "  - task: {type: text-classification}",
            "    metrics:",
            f"    - {{type: accuracy, value: {res['test_accuracy']:.4f}}}",
            f"    - {{type: f1, value: {res.get('test_macro_f1', 0.0):.4f}, name: macro-F1}}",
        ]
    front.append("---")
    hp = [
        ("freeze depth (bottom layers frozen)", model.get("freeze_depth", 0)),
        ("head", model.get("head", "auto")),
        ("learning rate", train.get("learning_rate")),
        ("batch size", train.get("batch_size")),
        ("epochs", train.get("epochs")),
        ("weight decay", train.get("weight_decay")),
        ("warmup ratio", train.get("warmup_ratio")),
        ("max sequence length", train.get("max_length")),
        ("seed", train.get("seed")),
        ("precision", train.get("precision")),
    ]
    if train.get("schedule") == "two-phase" and not baseline:
        hp[2:2] = [
            ("schedule", "head first (encoder frozen), then fine-tuning"),
            ("head-phase epochs", train.get("head_epochs")),
            ("head-phase learning rate", train.get("head_learning_rate")),
        ]
    if not baseline and str(train.get("class_weights") or "none").strip().lower() != "none":
        hp.append(("class weights in the loss", train.get("class_weights")))
    if baseline:
        base_md, dataset_md = escape_md(base), escape_md(dataset)
        what = {"tfidf": "word 1-2-gram TF-IDF features", "nbsvm": "word 1-2-grams scaled by naive-Bayes log-count "
                "ratios (NBSVM)", "embeddings": f"the mean-pooled last hidden states of **{base_md}** "
                "(frozen)"}.get(cfg.get("baseline", ""), "features")  # fmt: skip
        param = "alpha" if "alpha" in res else "C"  # ridge (regression) or logistic regression (classes, label sets)
        setting = f"{param} = {_setting(res.get(param))}"
        estimator = escape_md(str(res.get("estimator", "logistic regression")))  # read back from a run record
        intro = (
            f"A **baseline** text classifier on **{dataset_md}**: {estimator} ({setting}, "
            f"chosen on the validation split) on {what}, made with ftui to compare fine-tuned models against. It is a "
            "scikit-learn pipeline saved with joblib (`baseline.joblib`): `joblib.load(...).predict_proba(texts)` for TF-IDF "
            "and NBSVM (`.predict(texts)` for a regression); the embeddings pipeline takes the encoder's features."
        )
        what_param = "alpha (ridge penalty)" if param == "alpha" else "C (inverse regularisation)"
        hp = [("features", what), (what_param, res.get(param)), ("max sequence length", train.get("max_length"))]
    else:
        intro = (
            f"A text classifier fine-tuned from **{escape_md(base)}** on **{escape_md(dataset)}**"
            + (f" (config {code_md(data['config_name'])})" if data.get("config_name") else "")
            + " with ftui, a browser dashboard for fine-tuning encoder classifiers."
        )
    best = res.get("best_eval") or {}
    lines = [
        *front,
        "",
        f"# {escape_md(rec.get('name', 'ftui model'))}",
        "",
        intro,
        "",
        f"Labels: {', '.join(code_md(n) for n in labels)}.",
        "",
        "## Intended use",
        "",
        "Classifying short texts like those in the training data into the labels above. It was trained for one "
        "dataset and inherits that dataset's domain and labelling choices: check it on your own data before relying "
        "on it, and do not use it for decisions about people without human review.",
        "",
        "## Training",
        "",
        "| hyperparameter | value |",
        "| --- | --- |",
        *[f"| {k} | {v if k == 'features' else escape_md(_setting(v))} |" for k, v in hp],  # features: built above
        "",
        f"Trained on {_setting(res.get('train_size'))} examples in {_seconds(res.get('train_seconds'))} on "
        f"{res.get('device', '?')}.",
        "",
        "## Evaluation",
        "",
        *_evaluation_rows(res, best),
        "",
        "## Limitations and bias",
        "",
        "This model inherits the limitations and biases of its base checkpoint and of its training data; small "
        "datasets give a model that is confident about patterns specific to them.",
    ]
    if base_limitations.strip():
        lines += ["", f"From the base model's card ({escape_md(base)}):", "", escape_md_block(base_limitations)]
    return "\n".join(lines) + "\n"


def per_class_table(run_dir: Path, names: list[str]) -> list[dict[str, Any]]:
    """Per-class metrics from the run's saved test predictions (empty when there are none)."""
    import pandas as pd

    path = run_dir / PREDICTIONS_FILE
    if not path.exists():
        return []
    info = read_task(run_dir / MODEL_DIR) if (run_dir / MODEL_DIR).exists() else TaskInfo()
    if info.task is Task.MULTI:
        frame = pd.read_parquet(path)
        gold, pred = multi_label_matrices(frame, names, info.threshold)
        return per_label(pred, gold, names)
    frame = pd.read_parquet(path, columns=["label", "predicted"])
    if info.task is Task.REGRESSION:
        return [{"metric": k, "value": v} for k, v in regression_metrics(frame["predicted"], frame["label"]).items()]
    idx = {n: i for i, n in enumerate(names)}
    return per_class(frame["predicted"].map(idx).tolist(), frame["label"].map(idx).tolist(), names)


def multi_label_matrices(frame: Any, names: list[str], threshold: float) -> tuple[Any, Any]:
    """(true, predicted) boolean (texts, labels) matrices from a multi-label run's saved test predictions."""
    import numpy as np

    gold = np.stack([frame[f"y({n})"].to_numpy(dtype=bool) for n in names], axis=1)
    pred = np.stack([frame[f"p({n})"].to_numpy() >= threshold for n in names], axis=1)
    return gold, pred


def onnx_files(run_dir: Path) -> list[Path]:
    """The run's checked ONNX export (graphs and report), or nothing when it has none."""
    folder = run_dir / ONNX_DIR
    if not (folder / COMPLETE).exists():
        return []
    return sorted(f for f in folder.iterdir() if f.is_file() and f.name != COMPLETE)


def export_zip(rec: dict[str, Any], run_dir: Path, dest_dir: Path, base_limitations: str = "") -> Path:
    """A zip with the model folder (weights, tokenizer, labels), run config, metrics and a model card."""
    model_dir = run_dir / MODEL_DIR
    if not (model_dir / "labels.json").exists():
        raise FtuiError(f"Run '{rec.get('name')}' has no saved model to export.", "Export a finished run.")
    dest_dir.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in rec.get("name", rec["run_id"]))[:80] or "run"
    out = dest_dir / f"{safe}.zip"
    metrics = {
        "result": rec.get("result", {}),
        "per_class": per_class_table(run_dir, rec.get("label_names", [])),
        "events": rec.get("events", []),
    }
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(model_dir.rglob("*")):
            if f.is_file() and f.name != COMPLETE:
                z.write(f, f"model/{f.relative_to(model_dir)}")
        z.writestr("model/README.md", model_card(rec, base_limitations))
        z.writestr("config.json", json.dumps(rec.get("config", {}), indent=1))
        z.writestr("metrics.json", json.dumps(metrics, indent=1, default=str))
        if (run_dir / PREDICTIONS_FILE).exists():
            z.write(run_dir / PREDICTIONS_FILE, PREDICTIONS_FILE)
        for f in onnx_files(run_dir):
            z.write(f, f"onnx/{f.name}")
    tmp.replace(out)
    for old in dest_dir.glob("*.zip"):  # one export per run: a zip under an earlier name of the run is stale
        if old != out:
            old.unlink(missing_ok=True)
    return out


def push_to_hub(
    rec: dict[str, Any], run_dir: Path, repo_id: str, token: str, private: bool, base_limitations: str = "", api: Any = None
) -> str:
    """Create (or reuse) a model repo and upload the model with its card; returns the repo URL."""
    from ftui.config import is_hub_id

    repo_id = (repo_id or "").strip()
    if not is_hub_id(repo_id):
        raise HubError(f"'{repo_id}' is not a Hub repo id.", "Use 'your-name/model-name'.")
    if not (token or "").strip():
        raise HubError("Pushing needs a Hub token with write access.", "Paste a write token in the token box.")
    model_dir = run_dir / MODEL_DIR
    if not (model_dir / "labels.json").exists():
        raise FtuiError(f"Run '{rec.get('name')}' has no saved model to push.", "Push a finished run.")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="ftui-push-") as tmp:
        stage = Path(tmp) / "repo"
        shutil.copytree(model_dir, stage, ignore=shutil.ignore_patterns(COMPLETE))
        (stage / "README.md").write_text(model_card(rec, base_limitations, repo_id), encoding="utf-8")
        for f in onnx_files(run_dir):
            (stage / ONNX_DIR).mkdir(exist_ok=True)
            shutil.copy2(f, stage / ONNX_DIR / f.name)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(folder_path=str(stage), repo_id=repo_id, repo_type="model", commit_message="Upload from ftui")
        except Exception as exc:
            from ftui.hub import explain_hub_error

            raise explain_hub_error(exc, "model repo", repo_id) from exc
    return str(url)

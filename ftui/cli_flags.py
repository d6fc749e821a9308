"""The command line's flags, generated from the config dataclasses (each flag's help is its field's one-line why):
data and model sources, and every TrainConfig field as a `train` flag."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from ftui.config import LONG_TEXT, PRECISIONS, SCHEDULES, AdaptConfig, DataConfig, ModelConfig, TrainConfig
from ftui.tasks import TASK_CHOICES

HELP = {f.name: f.metadata.get("help", "").replace("%", "%%") for f in fields(TrainConfig)}
DATA_HELP = {f.name: f.metadata.get("help", "").replace("%", "%%") for f in fields(DataConfig)}
ADAPT_HELP = {f.name: f.metadata.get("help", "").replace("%", "%%") for f in fields(AdaptConfig)}  # argparse formats %


def source_of(value: str, builtin: str, local: bool) -> tuple[str, str]:
    """(source, id): the built-in name, an existing local path, or else a Hub id."""
    if value == builtin:
        return builtin, ""
    return ("local", value) if local else ("hub", value)


def data_config(args: argparse.Namespace) -> DataConfig:
    source, ident = source_of(args.dataset, "demo", Path(args.dataset).expanduser().exists())
    return DataConfig(
        source=source,
        dataset_id=ident,
        config_name=args.config,
        text_columns=tuple(args.text_column or ()),
        label_column=args.label_column if not args.label_columns else None,
        label_columns=tuple(c.strip() for c in (args.label_columns or "").split(",") if c.strip()),
        task=args.task,
        max_train_examples=args.max_train_examples,
        trust_remote_code=getattr(args, "trust_dataset_code", False),
    )


def model_config(args: argparse.Namespace) -> ModelConfig:
    source, ident = source_of(args.checkpoint, "packaged", Path(args.checkpoint).expanduser().is_dir())
    return ModelConfig(
        source=source,
        checkpoint=ident,
        freeze_depth=getattr(args, "freeze_depth", 0),
        head=getattr(args, "head", "auto"),
        trust_remote_code=args.trust_remote_code,
    )


def data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="demo", help="'demo', a Hub id, or a local file/folder")
    p.add_argument("--config", default=None, help="Hub dataset config (e.g. sst2 for glue)")
    p.add_argument("--text-column", action="append", help="text column (twice for pairs); None: detect")
    p.add_argument("--label-column", default=None, help="label column; None: detect")
    p.add_argument("--label-columns", default=None, help="multi-label from several 0/1 columns, comma-separated (one per label)")
    p.add_argument("--task", choices=list(TASK_CHOICES), default="auto", help=DATA_HELP["task"])
    p.add_argument("--max-train-examples", type=int, default=0, help="stratified cap on train rows; 0 = all")
    p.add_argument("--trust-dataset-code", action="store_true", help="allow code shipped in the dataset's Hub repo")


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="packaged", help="'packaged', a Hub id, or a local checkpoint folder")
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow model code shipped in the checkpoint (not the dataset's)"
    )


# The `train` flags are TrainConfig's fields, generated from the dataclass (each flag's help is its field's one-line
# why); these tables hold only what a field cannot say about its flag.
TRAIN_FLAG = {"learning_rate": "lr", "head_learning_rate": "head-lr"}  # shorter spellings than the field names
TRAIN_NEGATED = ("frozen_cache", "tune_threshold", "recommend")  # on by default: their flag (--no-...) turns them off
TRAIN_CHOICES = {"precision": PRECISIONS, "schedule": SCHEDULES, "long_text": LONG_TEXT}
TRAIN_COMPUTED = {"learning_rate": "None: 1e-4 packaged, else 5e-5", "batch_size": "None: 16 on CPU, 64 on a GPU"}
TRAIN_NOT_FLAGS = ("processes",)  # torchrun's world size, never typed


GIVEN = "given_train_fields"  # the namespace attribute naming the TrainConfig fields typed on the command line


class _Given(argparse.Action):
    """argparse's store, noting the field as given: a recommendation (ftui.recommend) never overrides a typed flag."""

    def __init__(self, *args: Any, field: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.field = field

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, GIVEN, {*getattr(namespace, GIVEN, ()), self.field})


def given_fields(args: argparse.Namespace) -> frozenset[str]:
    """The TrainConfig fields whose flag was typed (its default was not just taken)."""
    return frozenset(getattr(args, GIVEN, ()))


def train_flag(name: str) -> str:
    """The command-line flag of a TrainConfig field."""
    return "--" + ("no-" if name in TRAIN_NEGATED else "") + TRAIN_FLAG.get(name, name).replace("_", "-")


def train_config_args(t: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in TRAIN_NOT_FLAGS:
            continue
        default = getattr(d, f.name)
        if f.name in TRAIN_NEGATED:
            t.add_argument(train_flag(f.name), action="store_true", help=f"turn off: {HELP[f.name]}")
        elif f.name in TRAIN_COMPUTED:
            computed = f"{HELP[f.name]} ({TRAIN_COMPUTED[f.name]})"
            t.add_argument(train_flag(f.name), type=type(default), default=None, help=computed, action=_Given, field=f.name)
        else:
            choices = list(TRAIN_CHOICES[f.name]) if f.name in TRAIN_CHOICES else None
            t.add_argument(train_flag(f.name), type=type(default), default=default, choices=choices, help=HELP[f.name],
                           action=_Given, field=f.name)  # fmt: skip


def train_config(args: argparse.Namespace, **computed: Any) -> TrainConfig:
    """The TrainConfig the `train` flags describe; `computed` fills the fields whose default depends on the machine."""
    values: dict[str, Any] = {}
    for f in fields(TrainConfig):
        if f.name in TRAIN_NOT_FLAGS:
            continue
        given = getattr(args, train_flag(f.name)[2:].replace("-", "_"))
        values[f.name] = (not given) if f.name in TRAIN_NEGATED else given
    return TrainConfig(**{**values, **computed})


def train_args(t: argparse.ArgumentParser) -> None:
    """The flags of `train` (and the fixed part of `sweep`)."""
    data_args(t)
    model_args(t)
    t.add_argument("--freeze-depth", type=int, default=0, help="0 trains all; k freezes embeddings + bottom k layers")
    t.add_argument("--head", choices=["auto", "mlp"], default="auto", help="model's own head or an MLP head")
    train_config_args(t)
    t.add_argument("--runs-dir", default=None, help="where runs are saved (None: ./runs or $FTUI_RUNS_DIR)")
    t.add_argument("--offline", action="store_true", help="do not contact the Hub")


def run_args(t: argparse.ArgumentParser) -> None:
    """Flags of `train` alone: continue a run instead of starting one."""
    t.add_argument("--resume", default=None, metavar="RUN_ID",
                   help="continue a stopped or interrupted run from its last snapshot (its own settings; any number of "
                        "processes)")  # fmt: skip
    t.add_argument("--run-id", default=None, help=argparse.SUPPRESS)  # the app hands a run it created to a torchrun child
    t.add_argument("--from-snapshot", action="store_true", help=argparse.SUPPRESS)  # ... which it is resuming

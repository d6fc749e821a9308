"""The command line's flags, generated from the config dataclasses (each flag's help is its field's one-line why):
data and model sources, every TrainConfig field as a `train` flag, and the fields `baseline` and `adapt` set."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import Field, dataclass, fields
from pathlib import Path
from typing import Any

from ftui.config import (
    BASELINES,
    LONG_TEXT,
    PRECISIONS,
    SCHEDULES,
    AdaptConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from ftui.config import PRESETS as CONFIG_PRESETS
from ftui.tasks import TASK_CHOICES

DATA_HELP = {f.name: f.metadata.get("help", "").replace("%", "%%") for f in fields(DataConfig)}  # argparse formats %


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


# ------------------------------------------------------------------------------------------ generated flags
# A config field's flag takes its type, default and help from the field; a Flag holds only what the field cannot say.
_FIELD: Any = object()  # "as the field says"


@dataclass(frozen=True)
class Flag:
    """How one config field appears on a command line, beyond what the field itself says."""

    name: str = ""  # the flag without its dashes when it is not the field's name ('lr' for learning_rate)
    default: Any = _FIELD  # the command's default when it differs from the field's (None: the command computes it)
    choices: tuple[str, ...] = ()  # the values the flag accepts (none: any of the field's type)
    note: str = ""  # said after the field's help (what the default means, what the field is for in this command)
    switch: Any = _FIELD  # a flag without a value that sets the field to this ('--from-scratch': mode='scratch')


def _help(f: Field[Any]) -> str:
    return str(f.metadata.get("help", "")).replace("%", "%%")  # argparse formats % in help


def _switch(f: Field[Any], spec: Flag) -> Any:
    """The value a valueless flag gives its field: the spec's, or the other value of a yes/no field."""
    if spec.switch is not _FIELD:
        return spec.switch
    return (not f.default) if isinstance(f.default, bool) else _FIELD


def flag_name(f: Field[Any], spec: Flag) -> str:
    """The flag of a config field ('--no-…' for a yes/no field that is on by default)."""
    if spec.name:
        return "--" + spec.name
    negated = isinstance(f.default, bool) and f.default and spec.switch is _FIELD
    return "--" + ("no-" if negated else "") + f.name.replace("_", "-")


def _chosen(cls: type, specs: Mapping[str, Flag], every_but: tuple[str, ...] | None) -> list[tuple[Field[Any], Flag]]:
    """The fields of `cls` that are flags: those named in `specs`, or every field but `every_but` when given."""
    chosen = [f for f in fields(cls) if (f.name in specs if every_but is None else f.name not in every_but)]
    return [(f, specs.get(f.name, Flag())) for f in chosen]


def add_config_flags(
    p: argparse.ArgumentParser, cls: type, specs: Mapping[str, Flag], every_but: tuple[str, ...] | None = None
) -> None:
    """Add a flag per chosen field of the config dataclass `cls`: those named in `specs`, or every field but
    `every_but` when given."""
    for f, spec in _chosen(cls, specs, every_but):
        text = _help(f) + (f" ({spec.note})" if spec.note else "")
        if _switch(f, spec) is not _FIELD:
            off = isinstance(f.default, bool) and f.default and spec.switch is _FIELD
            p.add_argument(flag_name(f, spec), action="store_true", help=("turn off: " if off else "") + text)
            continue
        default = f.default if spec.default is _FIELD else spec.default
        kind = type(f.default) if f.default is not None else str  # a field that may be None holds text
        choices = list(spec.choices) or None
        # _Given notes the field as typed, so a recommendation (ftui.recommend) never overrides it
        p.add_argument(flag_name(f, spec), type=kind, default=default, choices=choices, help=text, action=_Given, field=f.name)


def config_values(
    args: argparse.Namespace, cls: type, specs: Mapping[str, Flag], every_but: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The chosen fields' values (as in add_config_flags) from the parsed flags."""
    values: dict[str, Any] = {}
    for f, spec in _chosen(cls, specs, every_but):
        given = getattr(args, flag_name(f, spec)[2:].replace("-", "_"))
        switch = _switch(f, spec)
        values[f.name] = given if switch is _FIELD else (switch if given else f.default)
    return values


# `train`: every TrainConfig field but the torchrun world size.
TRAIN_FLAGS = {
    "learning_rate": Flag(name="lr", default=None, note="None: 1e-4 packaged, else 5e-5"),
    "batch_size": Flag(default=None, note="None: 16 on CPU, 64 on a GPU"),
    "head_learning_rate": Flag(name="head-lr"),
    "precision": Flag(choices=PRECISIONS),
    "schedule": Flag(choices=SCHEDULES),
    "long_text": Flag(choices=LONG_TEXT),
}
TRAIN_NOT_FLAGS = ("processes",)  # torchrun's world size, never typed


def train_flag(name: str) -> str:
    """The command-line flag of a TrainConfig field."""
    f = next(f for f in fields(TrainConfig) if f.name == name)
    return flag_name(f, TRAIN_FLAGS.get(name, Flag()))


def train_config_args(t: argparse.ArgumentParser) -> None:
    add_config_flags(t, TrainConfig, TRAIN_FLAGS, every_but=TRAIN_NOT_FLAGS)


def train_config(args: argparse.Namespace, **computed: Any) -> TrainConfig:
    """The TrainConfig the `train` flags describe; `computed` fills the fields whose default depends on the machine."""
    return TrainConfig(**{**config_values(args, TrainConfig, TRAIN_FLAGS, every_but=TRAIN_NOT_FLAGS), **computed})


# `baseline`: which one (RunConfig.baseline), and the training settings a baseline reads.
BASELINE_FLAGS = {"baseline": Flag(name="kind", default="tfidf", choices=BASELINES)}
BASELINE_TRAIN_FLAGS = {"max_length": Flag(note="embeddings"), "seed": Flag(), "run_name": Flag()}

# `adapt`: every AdaptConfig field but the corpus (one --corpus flag says both where and which), and the training
# settings of a masked-LM run.
ADAPT_FLAGS = {
    "corpus_config": Flag(name="corpus-config"),
    "corpus_split": Flag(name="split"),
    "mode": Flag(name="from-scratch", switch="scratch", note="this flag: scratch, a new WordPiece tokenizer and BERT"),
    "lowercase": Flag(name="cased"),
    "preset": Flag(choices=tuple(CONFIG_PRESETS)),
}
ADAPT_NOT_FLAGS = ("corpus_source", "corpus")
ADAPT_TRAIN_FLAGS = {
    "learning_rate": Flag(name="lr"),
    "batch_size": Flag(note="here: blocks of --block-length tokens"),
    "epochs": Flag(default=1.0, note="here: passes over the corpus"),
    "max_steps": Flag(),
    "max_length": Flag(name="block-length", note="here: tokens per block"),
    "evals_per_epoch": Flag(note="here: held-out evaluations"),
    "seed": Flag(),
    "run_name": Flag(),
}


def baseline_args(b: argparse.ArgumentParser) -> None:
    """The flags of `baseline`."""
    data_args(b)
    model_args(b)
    add_config_flags(b, RunConfig, BASELINE_FLAGS)
    add_config_flags(b, TrainConfig, BASELINE_TRAIN_FLAGS)
    b.add_argument("--runs-dir", default=None, help="where runs are saved (None: ./runs or $FTUI_RUNS_DIR)")
    b.add_argument("--offline", action="store_true", help="do not contact the Hub")


def baseline_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of `baseline`'s flags."""
    return RunConfig(
        data=data_config(args),
        model=model_config(args),
        train=TrainConfig(**config_values(args, TrainConfig, BASELINE_TRAIN_FLAGS)),
        kind="baseline",
        **config_values(args, RunConfig, BASELINE_FLAGS),
    )


def adapt_args(ad: argparse.ArgumentParser) -> None:
    """The flags of `adapt`."""
    ad.add_argument("--corpus", default="demo", help="'demo', a file (.txt one document per line, or a table), or a Hub id")
    ad.add_argument("--checkpoint", default="packaged", help="continue pre-training this ('packaged', a Hub id or a folder)")
    ad.add_argument("--trust-remote-code", action="store_true", help="allow code shipped in Hub repos")
    add_config_flags(ad, AdaptConfig, ADAPT_FLAGS, every_but=ADAPT_NOT_FLAGS)
    add_config_flags(ad, TrainConfig, ADAPT_TRAIN_FLAGS)
    ad.add_argument("--runs-dir", default=None, help="where runs are saved (None: ./runs or $FTUI_RUNS_DIR)")
    ad.add_argument("--offline", action="store_true", help="do not contact the Hub")


def adapt_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of `adapt`'s flags: --corpus is 'demo', an existing file, or else a Hub id."""
    corpus = args.corpus
    source = "demo" if corpus == "demo" else ("file" if Path(corpus).expanduser().is_file() else "hub")
    adapt = AdaptConfig(corpus_source=source, corpus="" if source == "demo" else corpus,
                        **config_values(args, AdaptConfig, ADAPT_FLAGS, every_but=ADAPT_NOT_FLAGS))  # fmt: skip
    return RunConfig(
        model=model_config(args),
        train=TrainConfig(**config_values(args, TrainConfig, ADAPT_TRAIN_FLAGS)),
        kind="mlm",
        adapt=adapt,
    )


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

"""Optional metric sinks by their usual `report_to` names: TensorBoard and trackio, used only when installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftui.events import Event, EventType, decode

SINKS = ("tensorboard", "trackio")
_SCALARS = ("loss", "lr", "eval_loss", "eval_accuracy", "eval_macro_f1", "test_loss", "test_accuracy", "test_macro_f1")


def available() -> list[str]:
    """The sink names whose packages are importable here."""
    mods = {"tensorboard": "tensorboard", "trackio": "trackio"}
    return [name for name in SINKS if importlib.util.find_spec(mods[name]) is not None]


def parse(report_to: str) -> list[str]:
    """'tensorboard, trackio' -> ['tensorboard', 'trackio']; 'none' or '' -> []."""
    names = [n.strip().lower() for n in (report_to or "").split(",") if n.strip()]
    return [n for n in names if n != "none"]


def _scalars(e: Event) -> dict[str, float]:
    prefix = {EventType.TRAIN: "train/", EventType.EVAL: "eval/", EventType.TEST: "test/"}.get(e.type, "")
    out = {}
    for key in _SCALARS:
        value = getattr(e, key, None)  # None: this event type has no such field, or left it unset
        if isinstance(value, (int, float)):
            out[prefix + key.removeprefix("eval_").removeprefix("test_")] = float(value)
    return out


def open_sinks(names: list[str], run_name: str, out_dir: Path, config: dict[str, Any]) -> list[Callable[..., None]]:
    """Callables taking (event) and, at the end, (None) to close; unknown or missing sinks raise ValueError."""
    sinks: list[Callable[..., None]] = []
    for name in names:
        if name not in SINKS:
            raise ValueError(f"unknown metric sink '{name}' (choose from {', '.join(SINKS)})")
        if name not in available():
            raise ValueError(f"'{name}' is not installed: pip install {name}")
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

            def tb(event: dict[str, Any] | None, w: Any = writer) -> None:
                if event is None:
                    w.close()
                    return
                e = decode(event)
                for k, v in _scalars(e).items():
                    w.add_scalar(k, v, e.step)

            sinks.append(tb)
        else:
            import trackio

            trackio.init(project="ftui", name=run_name, config=config)

            def tk(event: dict[str, Any] | None, t: Any = trackio) -> None:
                if event is None:
                    t.finish()
                    return
                e = decode(event)
                values = _scalars(e)
                if values:
                    t.log(values, step=e.step)

            sinks.append(tk)
    return sinks

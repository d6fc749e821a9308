"""Frozen-prefix cache benchmark: epoch time at freeze depth k against a full epoch, with and without the cache.

Target: after the first epoch, an epoch at depth k of N layers costs at most (N - k) / N of a full (depth 0) epoch
plus 10%. Each configuration runs in its own child process through bench/train_speed.py's ftui recipe.

    python bench/freeze_cache.py --data ../shared/data/rotten_tomatoes --model packaged --freeze 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_speed  # noqa: E402 - a sibling script, not a package


def layers_of(model_dir: Path) -> int:
    """N, the number of encoder layers of the checkpoint."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    return int(getattr(cfg, "num_hidden_layers", None) or cfg.n_layers)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if train_speed._has_cuda() else "cpu")
    p.add_argument("--data", help="folder with train/validation/test files")
    p.add_argument("--synthetic", type=int, default=4000)
    p.add_argument("--model", default="packaged")
    p.add_argument("--freeze", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=512)
    a = p.parse_args(argv)

    common = ["--device", a.device, "--model", a.model, "--batch-size", str(a.batch_size), "--max-length", str(a.max_length)]
    common += ["--data", a.data] if a.data else ["--synthetic", str(a.synthetic)]
    with tempfile.TemporaryDirectory() as tmp:
        args = train_speed.parse([*common, "--recipes", "ftui"])
        data_dir, model_dir, _ = train_speed.prepare_inputs(args, Path(tmp))
        n_layers = layers_of(model_dir)

        def ftui(extra: list[str]) -> dict[str, Any]:
            child_args = train_speed.parse([*common, *extra])
            argv_ = train_speed._argv_for_child(child_args, "ftui", data_dir, model_dir)
            return train_speed.run_child(argv_, "ftui")

        full = ftui(["--epochs", "1"])
        cached = ftui(["--epochs", str(a.epochs), "--freeze", str(a.freeze)])
        plain = ftui(["--epochs", str(a.epochs), "--freeze", str(a.freeze), "--no-frozen-cache"])
    full_epoch = full["epoch_s_each"][0]
    later_cached = cached["epoch_s_each"][1:]
    later_plain = plain["epoch_s_each"][1:]
    target = (n_layers - a.freeze) / n_layers + 0.10
    out = {
        "device": a.device,
        "model": a.model,
        "layers": n_layers,
        "freeze": a.freeze,
        "full_epoch_s": full_epoch,
        "frozen_cached_epochs_s": cached["epoch_s_each"],
        "frozen_recomputed_epochs_s": plain["epoch_s_each"],
        "later_epoch_vs_full": round(max(later_cached) / full_epoch, 3),
        "target_at_most": round(target, 3),
        "cache_speedup_vs_recompute": round(max(later_plain) / max(later_cached), 2),
        "accuracy": {"cached": cached.get("accuracy"), "recomputed": plain.get("accuracy")},
    }
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()

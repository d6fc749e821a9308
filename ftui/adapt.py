"""Domain-adaptive pre-training on the one training core: a corpus of texts, masked-language modelling that continues
a checkpoint or trains a WordPiece tokenizer and a small BERT from scratch, held-out perplexity, an adapted checkpoint."""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ftui import advice
from ftui.accel import autocast_dtype, pick_device, seed_everything
from ftui.columns import TEXT_NAMES
from ftui.config import AdaptConfig, ReadLimits, RunConfig
from ftui.data import DEMO_DATASET
from ftui.errors import DataError, ModelError, StopRequested
from ftui.events import MLMEvalEvent, NoticeEvent, decode_all
from ftui.mlm import IGNORE, Blocks, mask_tokens, pack_blocks, scratch_config, train_wordpiece
from ftui.modeling import display_name, load_tokenizer, resolve_checkpoint
from ftui.readers import read_table
from ftui.recipes import recipe_of
from ftui.run_layout import MODEL_DIR, RESUME_DIR
from ftui.runs import Run, RunStatus
from ftui.schedule import Phase
from ftui.train_state import Ending, Holdings, Outcome
from ftui.training_core import TrainingCore
from ftui.worker import run_worker

log = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"  # a from-scratch run's tokenizer, kept so a resume tokenizes exactly as before
EVAL_SEED = 1234  # validation masks are the same at every evaluation, so perplexities compare


@dataclass
class Corpus:
    """The documents to pre-train on, and what reading them did."""

    texts: list[str]
    name: str
    duplicates: int = 0
    dropped_empty: int = 0
    notes: list[str] = field(default_factory=list)


def _text_column(df: pd.DataFrame, wanted: str | None) -> str:
    if wanted:
        if wanted not in df.columns:
            raise DataError(f"There is no column '{wanted}' in the corpus.", "Pick its text column.")
        return wanted
    lower = {str(c).lower(): c for c in df.columns}
    for name in TEXT_NAMES:
        if name in lower:
            return lower[name]
    strings = [c for c in df.columns if df[c].map(lambda v: isinstance(v, str)).mean() > 0.9]
    if not strings:
        raise DataError("The corpus has no column of text.", "Give a .txt file (one document per line) or a text column.")
    return max(strings, key=lambda c: df[c].astype(str).str.len().mean())


def load_corpus(cfg: AdaptConfig, limits: ReadLimits | None = None, token: str | None = None) -> Corpus:
    """The corpus's documents (empty ones dropped, exact duplicates removed), read under the deployment's caps."""
    limits = limits or ReadLimits()
    if cfg.corpus_source == "demo":
        name, texts = "bundled demo reviews", read_table(DEMO_DATASET, limits)["text"].astype(str).tolist()
    elif cfg.corpus_source == "file":
        path = Path(cfg.corpus).expanduser()
        name = path.name
        if path.suffix.lower() == ".txt":
            if path.stat().st_size > limits.max_bytes:
                raise DataError(
                    f"'{path.name}' is {path.stat().st_size / 2**20:,.0f} MB; this deployment reads up to "
                    f"{limits.max_bytes / 2**20:,.0f} MB.",
                    "Use a smaller corpus or a sample of it.",
                )
            try:
                texts = path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as exc:
                raise DataError(f"'{path.name}' is not UTF-8 text.", "Re-save it as UTF-8, then try again.") from exc
            if limits.max_rows and len(texts) > limits.max_rows:
                raise DataError(f"'{path.name}' has more than {limits.max_rows:,} lines.", "Use a sample of it.")
        else:
            df = read_table(path, limits)
            texts = df[_text_column(df, cfg.text_column)].astype("string").fillna("").tolist()
    else:
        import datasets

        from ftui.hub import explain_hub_error, hub_split_rows

        name = f"{cfg.corpus} / {cfg.corpus_split}"
        rows = hub_split_rows(cfg.corpus.strip(), cfg.corpus_config, token).get(cfg.corpus_split, 0)
        if limits.max_rows and rows > limits.max_rows:
            raise DataError(f"'{name}' has {rows:,} rows; this deployment reads at most {limits.max_rows:,}.", "")
        try:
            ds = datasets.load_dataset(cfg.corpus.strip(), cfg.corpus_config or None, split=cfg.corpus_split, token=token)
        except Exception as exc:
            raise explain_hub_error(exc, "dataset", cfg.corpus) from exc
        df = ds.select(range(min(len(ds), 1000))).to_pandas()
        texts = [str(t) for t in ds[_text_column(df, cfg.text_column)]]
    kept = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    unique = list(dict.fromkeys(kept))
    corpus = Corpus(unique, name, duplicates=len(kept) - len(unique), dropped_empty=len(texts) - len(kept))
    if not unique:
        raise DataError(f"The corpus '{name}' has no text.", "Give documents, one per line or one per row.")
    return corpus


# ---------------------------------------------------------------------------------------------------- objective
class MLMObjective:
    """Masked-token cross-entropy on packed blocks; the best checkpoint has the lowest held-out loss (perplexity)."""

    def __init__(
        self, blocks: dict[str, Blocks], tokenizer: Any, cfg: RunConfig, device: str, card: str, vocab_size: int
    ) -> None:
        self.blocks, self.tokenizer, self.device, self.card = blocks, tokenizer, device, card
        self.a, self.t = cfg.adapt, cfg.train
        self.train_rows = len(blocks["train"])
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = vocab_size

    def _batch(self, split: str, idx: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
        b = self.blocks[split]
        width = int(b.lengths[idx].max())
        ids = torch.from_numpy(b.ids[idx, :width])
        special = torch.from_numpy(b.special[idx, :width])
        start = torch.from_numpy(b.word_start[idx, :width]) if self.a.whole_word else None
        gen = torch.Generator().manual_seed(seed)
        inputs, labels = mask_tokens(ids, special, self.mask_id, self.vocab_size, self.a.mask_rate, gen, start)
        mask = (torch.arange(width)[None, :] < torch.from_numpy(b.lengths[idx])[:, None]).long()
        return {"input_ids": inputs.to(self.device), "attention_mask": mask.to(self.device), "labels": labels.to(self.device)}

    def row_weights(self, idx: np.ndarray) -> None:
        """Every block counts alike in the loss (and masked-LM runs train in one process)."""
        return None

    def epoch_batches(self, gen: torch.Generator) -> list[np.ndarray]:
        """Blocks in a shuffled order (all blocks are full but the last: no length grouping needed)."""
        order = torch.randperm(self.train_rows, generator=gen).numpy()
        return [order[i : i + self.t.batch_size] for i in range(0, len(order), self.t.batch_size)]

    def _loss(self, model: nn.Module, batch: dict[str, torch.Tensor], amp: torch.dtype | None) -> tuple[torch.Tensor, Any]:
        labels = batch.pop("labels")
        with torch.autocast(device_type=self.device, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(**batch).logits
        return nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE), (logits, labels)

    def train_loss(self, model: nn.Module, idx: np.ndarray, cache: Any, amp: torch.dtype | None) -> torch.Tensor:
        """Masked-token loss of one batch; its masks depend only on the seed and the batch's blocks, so a resumed run
        masks exactly as the uninterrupted one would."""
        seed = (self.t.seed * 1_000_003 + zlib.crc32(np.ascontiguousarray(idx).tobytes())) % 2**62
        return self._loss(model, self._batch("train", idx, seed), amp)[0]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, amp: torch.dtype | None, stop: Callable[[], bool], cache: Any) -> dict[str, float]:
        """Held-out masked-token loss, perplexity and accuracy (the same masks at every evaluation)."""
        was = model.training
        model.eval()
        # Sums stay on the device, read once at the end: a .item() per batch is a host sync per batch on a GPU.
        dev = self.device
        total, right, count = (torch.zeros((), dtype=torch.float64, device=dev) for _ in range(3))
        n = len(self.blocks["validation"])
        for k, start in enumerate(range(0, n, self.t.batch_size * 2)):
            if stop():
                raise StopRequested
            idx = np.arange(start, min(n, start + self.t.batch_size * 2))
            batch = self._batch("validation", idx, EVAL_SEED + k)
            labels = batch["labels"]
            loss, (logits, _) = self._loss(model, batch, amp)
            chosen = labels != IGNORE
            m = chosen.sum()
            total += loss.detach().double() * m
            right += ((logits.argmax(-1) == labels) & chosen).sum()  # no boolean indexing: that syncs too
            count += m
        model.train(was)
        masked = int(count)
        loss = float(total) / max(1, masked)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": int(right) / max(1, masked), "masked": masked}

    def better(self, metrics: dict[str, float], best: dict[str, Any] | None) -> bool:
        """Lower held-out loss."""
        if not math.isfinite(metrics["loss"]):
            return False  # a NaN loss is never the best
        return best is None or not math.isfinite(best["loss"]) or metrics["loss"] < best["loss"]

    def eval_event(self, step: int, epoch: float, metrics: dict[str, float], phase: str) -> MLMEvalEvent:
        """Held-out loss, perplexity and masked-token accuracy."""
        return MLMEvalEvent(
            step=step,
            epoch=round(epoch, 4),
            eval_loss=metrics["loss"],
            eval_perplexity=metrics["perplexity"],
            eval_masked_accuracy=metrics["accuracy"],
            phase=phase,
        )

    def progress(self, best: dict[str, Any]) -> dict[str, Any]:
        """The best held-out perplexity, for the status line."""
        return {"best_perplexity": best["perplexity"]}

    def save(self, model: nn.Module, tokenizer: Any, folder: Path) -> None:
        """An ordinary masked-LM checkpoint (model, tokenizer, card) that a classifier run can start from."""
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "README.md").write_text(self.card, encoding="utf-8")


# ---------------------------------------------------------------------------------------------------- the run
def masked_lm(cfg: RunConfig, tokenizer: Any, token: str | None, seed: int) -> tuple[nn.Module, list[str]]:
    """The model to pre-train: the checkpoint with its masked-LM head (notes say what starts fresh), or a new BERT."""
    from transformers import AutoModelForMaskedLM

    notes: list[str] = []
    if cfg.adapt.mode == "scratch":
        torch.manual_seed(seed)
        return AutoModelForMaskedLM.from_config(scratch_config(cfg.adapt.preset, len(tokenizer), cfg.train.max_length)), notes
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.model.trust_remote_code, "token": token or None, "dtype": torch.float32}
    if not cfg.model.allow_bin_weights:
        kwargs["use_safetensors"] = True
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(resolve_checkpoint(cfg.model), output_loading_info=True, **kwargs)
    except Exception as exc:
        text = str(exc)
        if "Unrecognized configuration class" in text or "Unrecognized model" in text:
            raise ModelError(
                f"'{display_name(cfg.model)}' has no masked-language-model form in transformers, so it cannot be "
                "pre-trained further.",
                "Pick an encoder checkpoint (BERT, RoBERTa, DistilBERT, …) or train a model from scratch.",
            ) from exc
        from ftui.modeling import _translate

        raise _translate(exc, cfg.model) from exc
    fresh = sorted(set(info.get("missing_keys", ())))
    if fresh:
        notes.append(
            f"The checkpoint ships no complete masked-LM head: {len(fresh)} tensor(s) start fresh ({', '.join(fresh[:3])}"
            f"{' …' if len(fresh) > 3 else ''}); its first evaluations show the head learning."
        )
    return model, notes


def card_for(run: Run, corpus: Corpus, blocks: dict[str, Blocks]) -> str:
    """The adapted checkpoint's card: corpus and recipe."""
    a, t = run.config.adapt, run.config.train
    start = (
        f"a new BERT ({a.preset}, WordPiece vocabulary of the corpus)"
        if a.mode == "scratch"
        else f"**{display_name(run.config.model)}**"
    )
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            "pipeline_tag: fill-mask",
            "tags:",
            "- ftui",
            "- fill-mask",
            "---",
            "",
            f"# {run.name}",
            "",
            f"Masked-language-model pre-training of {start} on **{corpus.name}** with ftui "
            f"({len(corpus.texts):,} documents, {blocks['train'].n_tokens:,} training tokens in blocks of {t.max_length}).",
            "",
            f"Recipe: mask rate {a.mask_rate:g} (80% [MASK], 10% random, 10% kept)"
            + (", whole words" if a.whole_word else "")
            + f", learning rate {t.learning_rate:g}, batch {t.batch_size}, {t.epochs:g} epoch(s)"
            + (f" (at most {t.max_steps} steps)" if t.max_steps else "")
            + f", warmup {t.warmup_ratio:g}, weight decay {t.weight_decay:g}, seed {t.seed}.",
            "",
            "Held-out perplexity is in ftui's run record. Fine-tune it as a classifier in ftui (Model tab: adapted "
            "checkpoints) or with `AutoModelForSequenceClassification.from_pretrained` on this folder.",
            "",
        ]
    )


def adapt_run(run: Run, token: str | None = None, limits: ReadLimits | None = None, resume: bool = False) -> None:
    """Worker body of a masked-LM run (the same lifecycle as every run); never raises."""
    device = pick_device()
    run_worker(run, lambda holdings: _adapt(run, token, device, holdings, limits, resume), device)


def _adapt(run: Run, token: str | None, device: str, holdings: Holdings, limits: ReadLimits | None, resume: bool) -> Outcome:
    """Read, tokenize, fit and finish a masked-LM run; its outcome (the completed run's result in it) for the worker."""
    cfg, a, t = run.config, run.config.adapt, run.config.train
    stop = run.stop_event.is_set
    t0 = time.perf_counter()
    run.set_progress(phase="reading the corpus")
    corpus = load_corpus(a, limits, token)
    seed_everything(t.seed)
    run.label_names = []
    tok_dir = run.out_dir / TOKENIZER_DIR
    if a.mode == "scratch":
        from transformers import AutoTokenizer

        if tok_dir.exists():
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        else:
            run.set_progress(phase="training the tokenizer")
            tokenizer = train_wordpiece(corpus.texts, a.vocab_size, a.min_frequency, a.lowercase, max(512, t.max_length))
            tokenizer.save_pretrained(tok_dir)
        if len(tokenizer) < a.vocab_size:
            corpus.notes.append(
                f"The corpus supports a vocabulary of {len(tokenizer):,} pieces, fewer than the {a.vocab_size:,} asked for "
                f"(pieces must occur at least {a.min_frequency} times): the model uses {len(tokenizer):,}."
            )
    else:
        tokenizer = load_tokenizer(cfg.model, token)
    if tokenizer.mask_token_id is None:
        raise ModelError(f"'{display_name(cfg.model)}' has a tokenizer without a mask token.", "Pick a BERT-style encoder.")
    if stop():
        raise StopRequested
    run.set_progress(phase="tokenizing")
    rng = np.random.default_rng(t.seed)
    order = rng.permutation(len(corpus.texts))
    n_val = max(1, int(round(a.holdout * len(order))))
    val_docs = [corpus.texts[i] for i in sorted(order[:n_val])]
    train_docs = [corpus.texts[i] for i in sorted(order[n_val:])] or val_docs
    blocks = {
        "train": pack_blocks(train_docs, tokenizer, t.max_length, stop),
        "validation": pack_blocks(val_docs, tokenizer, t.max_length, stop),
    }
    if blocks["train"].n_tokens < t.max_length:
        raise DataError(
            f"The corpus has {blocks['train'].n_tokens + blocks['validation'].n_tokens:,} tokens, less than two blocks of "
            f"{t.max_length}: there is too little to pre-train on.",
            "Add text, or lower the block length (max sequence length).",
        )
    run.set_progress(phase="loading model")
    model, notes = masked_lm(cfg, tokenizer, token, t.seed)
    model.to(device)
    holdings.model, holdings.tokenizer = model, tokenizer
    objective = MLMObjective(blocks, tokenizer, cfg, device, card_for(run, corpus, blocks), model.config.vocab_size)
    phases = [Phase("mlm", t.epochs, t.learning_rate, t.warmup_ratio, 0)]
    core = TrainingCore(run, model, tokenizer, phases, objective, device, holdings)
    if resume:
        core.begin(core.load_snapshot())
        before = None
    else:
        core.begin(None)  # the start event: the shape of the one phase, every parameter trainable
        for note in [*corpus.notes, *notes]:
            run.log(NoticeEvent(message=note))
        run.set_progress(phase="evaluating the starting point")
        before = objective.evaluate(model, autocast_dtype(t.precision, device), stop, None)
        run.log(objective.eval_event(0, 0.0, before, "mlm"))  # perplexity before any training: the curve's start
    run.set_progress(phase="training", step=core.state.step, total_steps=core.total_steps)
    outcome = core.fit()
    if outcome.ending is Ending.STOPPED:
        return outcome  # the worker keeps what Stop keeps
    state = outcome.state
    assert state is not None  # fit always says where it ended
    # The time cap caps adapt runs too (FTUI_MAX_RUN_MINUTES): say so when it cut the epochs set.
    advice.emit(run, advice.time_cut(run.events(), t.epochs, outcome.epochs, t.max_minutes, state.step))
    holdings.snapshot = None
    import shutil

    if not (run.out_dir / MODEL_DIR / "config.json").exists():
        raise ModelError("No checkpoint was saved.", "Train for at least one evaluation.")
    shutil.rmtree(run.out_dir / RESUME_DIR, ignore_errors=True)
    best = state.best or {}
    result = {
        "model_dir": str(run.out_dir / MODEL_DIR),
        "best_eval": best,
        "perplexity_before": before["perplexity"] if before else run.result.get("perplexity_before"),
        "perplexity_after": best.get("perplexity"),
        "train_seconds": round(time.perf_counter() - t0, 2),
        "steps": state.step,
        "train_loop_seconds": round(outcome.train_loop_seconds, 3),
        "train_samples": state.samples_seen,
        "block_length": t.max_length,
        "device": device,
        "corpus": corpus.name,
        "documents": len(corpus.texts),
        "duplicates_removed": corpus.duplicates,
        "train_tokens": blocks["train"].n_tokens,
        "vocab_size": int(model.config.vocab_size),
    }
    if before is None:  # resumed: the starting perplexity is the first evaluation the run logged
        first = [e for e in decode_all(run.events()) if isinstance(e, MLMEvalEvent) and e.step == 0]
        result["perplexity_before"] = first[0].eval_perplexity if first else None
    return replace(outcome, result=result)


def corpus_preview(corpus: Corpus, tokenizer: Any, block: int, limit: int = 5000) -> dict[str, Any]:
    """What the Adapt tab shows before training: documents, tokens, how many exceed a block, duplicates removed."""
    sample = corpus.texts[:limit]
    lengths = [len(ids) for ids in tokenizer(sample, add_special_tokens=True)["input_ids"]] if tokenizer else []
    scale = len(corpus.texts) / max(1, len(sample))
    return {
        "documents": len(corpus.texts),
        "duplicates_removed": corpus.duplicates,
        "empty_dropped": corpus.dropped_empty,
        "tokens": int(sum(lengths) * scale),
        "longer_than_block": int(sum(n > block for n in lengths) * scale),
        "blocks": max(1, int(math.ceil(sum(lengths) * scale / block))),
        "first": corpus.texts[:3],
    }


def adapted_checkpoints(runs: list[Run]) -> list[tuple[str, str]]:
    """(label, folder) of every completed masked-LM run, newest first: checkpoints a classifier run can start from."""
    out = []
    for run in reversed(runs):
        done = run.status == RunStatus.COMPLETED and (run.out_dir / MODEL_DIR / "config.json").exists()
        if recipe_of(run.config).adapts and done:
            ppl = run.result.get("perplexity_after")
            label = f"adapted: {run.name}" + (f" (held-out perplexity {ppl:.1f})" if isinstance(ppl, (int, float)) else "")
            out.append((label, str(run.out_dir / MODEL_DIR)))
    return out

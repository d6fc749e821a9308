"""Frozen-prefix cache: identical logits and losses with and without it, for each supported encoder family."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import tiny_config

from ftui.architecture import apply_freeze, encoder_layers
from ftui.batching import collate, tokenize_split
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.prefix_cache import PrefixCache
from ftui.runs import RunStatus
from ftui.training_core import _set_train_mode

TEXTS = [
    "great film",
    "the plot was thin and the acting wooden, a long two hours",
    "fine",
    "I would watch it again tomorrow",
    "not for me at all, sadly",
    "a triumph of style over substance that still somehow works",
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    return AutoTokenizer.from_pretrained(packaged_checkpoint())


def tiny_classifier(model_type: str):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    cfg = tiny_config(model_type, layers=3)
    cfg.num_labels = 2
    return AutoModelForSequenceClassification.from_config(cfg)


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "roberta", "electra"])
@pytest.mark.parametrize("depth", [1, 3])
def test_cached_prefix_gives_identical_logits(model_type, depth, tokenizer):
    model = tiny_classifier(model_type)
    apply_freeze(model, depth)
    ds = Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 1, 0, 1]})
    tok = tokenize_split(ds, tokenizer, max_length=32)
    cache = PrefixCache(model, depth, "cpu")
    model.eval()
    first, second = np.array([1, 2, 0]), np.array([3, 4, 5])
    with torch.no_grad():
        recomputed = {}
        for idx in (first, second):
            batch = collate(tok, idx, tokenizer.pad_token_id, "cpu")
            batch.pop("labels")
            assert not cache.ready("train", idx)
            with cache.context("train", tok, idx):  # first pass: computes and stores
                recomputed[tuple(idx)] = model(**batch).logits
        # Reuse in a different grouping, so rows meet other widths and neighbours than when stored.
        for idx in (np.array([1, 2, 0]), np.array([5, 4, 3])):
            assert cache.ready("train", idx)
            batch = collate(tok, idx, tokenizer.pad_token_id, "cpu")
            batch.pop("labels")
            full = model(**batch).logits
            calls: list[int] = []
            hooks = [m.register_forward_hook(lambda *_, c=calls: c.append(1)) for m in encoder_layers(model.base_model)[:depth]]
            with cache.reuse("train", tok, idx):
                cached = model(**batch).logits
            for h in hooks:
                h.remove()
            assert calls == []  # the frozen layers did not run
            assert torch.equal(cached, full), (cached - full).abs().max()
    # Everything is back in place after reuse.
    assert all(type(m).__name__ != "_Pass" for m in encoder_layers(model.base_model))
    assert cache.size_mb() > 0


def test_dropout_above_the_prefix_still_trains(tokenizer):
    model = tiny_classifier("bert")
    apply_freeze(model, 1)
    _set_train_mode(model, 1)
    ds = Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 1, 0, 1]})
    tok = tokenize_split(ds, tokenizer, max_length=32)
    cache = PrefixCache(model, 1, "cpu")
    idx = np.arange(6)
    batch = collate(tok, idx, tokenizer.pad_token_id, "cpu")
    y = batch.pop("labels")
    with cache.context("train", tok, idx):
        model(**batch)
    with cache.context("train", tok, idx):
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, y)
    loss.backward()
    layers = encoder_layers(model.base_model)
    assert layers[1].attention.self.query.weight.grad is not None
    assert layers[0].attention.self.query.weight.grad is None


def test_training_with_and_without_the_cache_matches(engine, tiny_bert_dir):
    """Two epochs at freeze depth 1: same losses and accuracy whether the prefix is cached or recomputed."""

    def run_with(frozen_cache: bool):
        cfg = RunConfig(
            data=DataConfig(),
            model=ModelConfig(source="local", checkpoint=str(tiny_bert_dir), freeze_depth=1),
            train=TrainConfig(
                epochs=2, batch_size=32, learning_rate=1e-3, evals_per_epoch=2, max_length=32, frozen_cache=frozen_cache
            ),
        )
        run = engine.start_run(cfg)
        assert run.done.wait(120) and engine.join(30)
        assert run.status == RunStatus.COMPLETED, run.error
        return run

    cached, plain = run_with(True), run_with(False)
    losses = [[e["loss"] for e in r.events() if e["type"] == "train"] for r in (cached, plain)]
    evals = [[e["eval_accuracy"] for e in r.events() if e["type"] == "eval"] for r in (cached, plain)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-6)
    assert evals[0] == evals[1]
    assert [e["epoch"] for e in cached.events() if e["type"] == "epoch"] == [1, 2]
    cached_mb = cached.snapshot().progress.prefix_cache_mb
    assert cached_mb is not None and cached_mb > 0
    assert plain.snapshot().progress.prefix_cache_mb is None


FAMILY_SIZES = {  # a tiny random config of a family the cache cannot stand in for (ModernBERT, DeBERTa, EuroBERT and
    # ALBERT now can: tests/test_architectures.py runs their cache without a notice)
    "fnet": dict(hidden_size=32, num_hidden_layers=3, intermediate_size=64, max_position_embeddings=128),
}  # fmt: skip


def cached_and_plain(engine, checkpoint) -> dict[bool, tuple]:
    results = {}
    for cache in (True, False):
        cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(checkpoint), freeze_depth=1),
                        TrainConfig(epochs=2, batch_size=32, learning_rate=1e-3, max_length=64, frozen_cache=cache))  # fmt: skip
        run = engine.start_run(cfg)
        assert run.done.wait(300) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
        notices = [e["message"] for e in run.events() if e["type"] == "notice"]
        results[cache] = (run.result["test_loss"], notices, list(run.snapshot().progress.notices))
    return results


def test_a_cache_that_gives_wrong_logits_switches_itself_off_and_the_run_goes_on(engine, tokenizer, tmp_path):
    """Case: FNet's cache gave wrong logits (padding mixes into real tokens in its Fourier layers). The first reuse is
    checked against a full forward; on a mismatch the cache is switched off with a notice, and the run ends exactly as
    a run without the cache."""
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model("fnet", vocab_size=30522, **FAMILY_SIZES["fnet"])).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    results = cached_and_plain(engine, tmp_path)
    loss, notices, shown = results[True]
    assert len(notices) == 1 and "cached logits differ" in notices[0] and "switched off" in notices[0]
    assert shown == notices  # the Train tab's status shows it
    assert results[False][1] == []
    assert loss == pytest.approx(results[False][0], abs=1e-6)  # the same run as without the cache


def test_a_stand_in_that_raises_switches_the_cache_off_and_the_run_goes_on(engine, tiny_bert_dir, monkeypatch):
    """Case: ModernBERT's and DeBERTa's layers once crashed the cache at its first reuse (after training time was
    spent). Any exception of a stand-in now costs speed, never the run."""
    from ftui import prefix_cache

    def broken(self, hidden_states, *args, **kwargs):
        raise AttributeError("'_Pass' object has no attribute 'attention_type'")

    monkeypatch.setattr(prefix_cache._Pass, "forward", broken)
    results = cached_and_plain(engine, tiny_bert_dir)
    loss, notices, _ = results[True]
    assert len(notices) == 1 and "attention_type" in notices[0] and "switched off" in notices[0]
    assert loss == pytest.approx(results[False][0], abs=1e-6)


def test_status_line_shows_the_notice():
    from ftui.plots import status_markdown
    from ftui.progress import Progress
    from ftui.runs import RunSnapshot

    snap = RunSnapshot("r1", "r", 3, RunStatus.RUNNING, (), Progress(notices=("cache off (x)",)), None, {}, 0.0, None)
    assert "⚠ cache off (x)" in status_markdown(snap)


# ---------------------------------------------------------------------------------------------- GPU-path bugs on CPU
@pytest.fixture(scope="module")
def base_width_bert(tmp_path_factory, tokenizer):
    """A random BERT of BERT-base width (768) and 6 layers: wide enough that bf16 rounding shows in the logits."""
    from transformers import AutoConfig, AutoModel

    path = tmp_path_factory.mktemp("bert-768")
    torch.manual_seed(0)
    cfg = AutoConfig.for_model("bert", hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072,
                               max_position_embeddings=128, vocab_size=30522)  # fmt: skip
    AutoModel.from_config(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_the_cache_stays_on_in_a_bf16_run(engine, base_width_bert):
    """Bug: the self-check compared states captured under bf16 autocast with an fp32 forward at an fp32 tolerance, so
    every bf16 run ("auto" on a GPU) switched the cache off ("cached logits differ ... by 0.0018" here). Now the
    check runs under the run's autocast, the states are stored in bf16, and the cache stays on."""
    cfg = RunConfig(
        DataConfig(max_train_examples=64),
        ModelConfig(source="local", checkpoint=str(base_width_bert), freeze_depth=5),
        TrainConfig(epochs=2, batch_size=32, learning_rate=1e-4, max_length=32, precision="bf16", evals_per_epoch=1),
    )
    run = engine.start_run(cfg)
    assert run.done.wait(300) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
    assert [e["message"] for e in run.events() if e["type"] == "notice"] == []
    assert run.snapshot().progress.prefix_cache_mb > 0


def test_under_autocast_the_states_are_stored_in_its_dtype_and_the_check_passes(tokenizer, base_width_bert):
    """The self-check of a bf16 run at freeze depth 5 of 6 (BERT-base width), as the training core builds the cache:
    it used to fail (0.0018 > 1e-3 x (1 + max |logit|)); the states are stored in bf16 (half the memory)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(base_width_bert, num_labels=2)
    apply_freeze(model, 5)
    _set_train_mode(model, 5)
    ds = Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 1, 0, 1]})
    tok = tokenize_split(ds, tokenizer, max_length=32)
    idx = np.arange(6)
    cache = PrefixCache(model, 5, "cpu", torch.bfloat16)
    batch = collate(tok, idx, 0, "cpu")
    batch.pop("labels")
    with torch.no_grad(), cache.context("train", tok, idx), torch.autocast("cpu", dtype=torch.bfloat16):
        model(**batch)
    assert cache.stores["train"].flat.dtype == torch.bfloat16
    with cache.guarded(model, batch, "train", tok, idx):
        pass
    assert cache.off_reason is None and "train" in cache.verified


def _filled(model, depth: int, tok, batches, **kw) -> PrefixCache:
    cache = PrefixCache(model, depth, "cpu", **kw)
    with torch.no_grad():
        for idx in batches:
            batch = collate(tok, idx, 0, "cpu")
            batch.pop("labels")
            with cache.context("train", tok, idx):
                model(**batch)
    return cache


def test_under_ddp_each_rank_stores_only_its_own_rows(tokenizer):
    """Bug: every rank sized its cache for the whole split and filled only its share (on the host path each of 4-8
    ranks pinned 25% of the same memory). A rank now stores exactly its rows, and they read back as a one-process
    cache's. Stand-in: rank 1 of 2 without a process group (the sizing and the shard rule need none)."""
    from ftui.distributed import Dist

    model = tiny_classifier("bert")
    apply_freeze(model, 2)
    model.eval()
    ds = Dataset.from_dict({"text": TEXTS * 3, "label": [1, 0, 1, 1, 0, 1] * 3})
    tok = tokenize_split(ds, tokenizer, max_length=32)
    rank1 = Dist(rank=1, world=2)
    batches = [np.arange(0, 8), np.arange(8, 18)]
    shards = [rank1.shard(idx)[0] for idx in batches]
    mine = _filled(model, 2, tok, shards, dist=rank1, eval_batch_size=4)
    alone = _filled(model, 2, tok, batches)
    owned = np.arange(len(tok)) % 2 == 1
    assert mine.stores["train"].flat.shape[0] == int(tok.lengths[owned].sum()) < alone.stores["train"].flat.shape[0]
    for idx in shards:
        assert mine.ready("train", idx)
        assert torch.equal(mine.states("train", tok, idx), alone.states("train", tok, idx))
    # Validation: the rows of every second batch of evaluate()'s batching, from this rank's on.
    from ftui.batching import eval_batches

    seen = np.concatenate(eval_batches(tok.lengths, 4)[1::2])
    assert sorted(np.flatnonzero(mine.rows_seen("validation", tok))) == sorted(seen)


def test_host_store_copies_land_before_they_are_read(tokenizer, monkeypatch):
    """Bug: on a GPU run whose split does not fit the GPU share, states went device->host with non_blocking=True into
    pinned memory and index_copy_ read them at once: stored rows could be stale. Stand-in for CUDA's semantics on CPU:
    a non_blocking copy returns a placeholder (NaN) whose data lands only when an event is synchronised; the cache
    believes it runs on a GPU with no free memory, so it takes the host store."""
    from ftui import prefix_cache as pc

    pending: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_to = torch.Tensor.to

    def lazy_to(self, *args, **kwargs):
        out = real_to(self, *args, **{k: v for k, v in kwargs.items() if k != "non_blocking"})
        if not kwargs.get("non_blocking"):
            return out
        placeholder = torch.full_like(out, float("nan"))
        pending.append((placeholder, out.clone()))
        return placeholder

    class Event:  # CUDA's: synchronize() returns when the copies queued before record() have landed
        def record(self) -> None:
            pass

        def synchronize(self) -> None:
            for dst, src in pending:
                dst.copy_(src)
            pending.clear()

    model = tiny_classifier("bert")
    apply_freeze(model, 2)
    model.eval()
    ds = Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 1, 0, 1]})
    tok = tokenize_split(ds, tokenizer, max_length=32)
    idx = np.arange(6)
    truth = _filled(model, 2, tok, [idx]).states("train", tok, idx)
    cache = PrefixCache(model, 2, "cpu")
    cache.device = "cuda"  # a GPU run ...
    monkeypatch.setattr(pc.torch.cuda, "mem_get_info", lambda: (0, 1))  # ... with no GPU memory to spare
    monkeypatch.setattr(pc.torch.cuda, "Event", Event)
    monkeypatch.setattr(pc, "_pinned_empty", lambda shape, dtype: torch.empty(shape, dtype=dtype), raising=False)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self.clone())
    batch = collate(tok, idx, 0, "cpu")
    batch.pop("labels")
    with torch.no_grad():
        with monkeypatch.context() as m:
            m.setattr(torch.Tensor, "to", lazy_to)
            with cache.capture("train", tok, idx):
                model(**batch)
        cache.device = "cpu"  # read back on the CPU
        stored = cache.states("train", tok, idx)
    assert not stored.isnan().any(), "rows were read before their copy landed"
    assert torch.equal(stored, truth)


def _host_store_of_a_gpu_run(tokenizer, monkeypatch, host_bytes: int):
    """A cache that believes it runs on a GPU with no GPU memory to spare (so it takes the pinned host store), on a
    machine with `host_bytes` available; pinning is stood in for by plain memory. Returns the cache after one capture
    of every row, and the store's exact size in bytes."""
    from ftui import prefix_cache as pc

    model = tiny_classifier("bert")
    apply_freeze(model, 2)
    model.eval()
    tok = tokenize_split(Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 1, 0, 1]}), tokenizer, max_length=32)
    cache = PrefixCache(model, 2, "cpu")
    cache.device = "cuda"
    monkeypatch.setattr(pc.torch.cuda, "mem_get_info", lambda: (0, 1))
    monkeypatch.setattr(pc, "host_available_bytes", lambda: host_bytes)
    monkeypatch.setattr(pc, "_pinned_empty", lambda shape, dtype: torch.empty(shape, dtype=dtype))
    monkeypatch.setattr(pc, "_landed", lambda: None)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self.clone())
    idx = np.arange(len(tok))
    batch = collate(tok, idx, 0, "cpu")
    batch.pop("labels")
    with torch.no_grad(), cache.capture("train", tok, idx):
        model(**batch)
    return cache, int(tok.lengths.sum()) * 32 * 4  # tokens x hidden 32 x fp32


def test_the_pinned_host_store_is_sized_for_the_allocators_power_of_two_rounding(tokenizer, monkeypatch):
    """Bug: the host store's budget (a quarter of available host memory) was checked against the bytes asked for, but
    PyTorch's caching host allocator pins the next power of two: up to twice the budget. With a budget between the
    two sizes the store must be refused."""
    from ftui import prefix_cache as pc

    _, exact = _host_store_of_a_gpu_run(tokenizer, monkeypatch, 10**12)
    rounded = pc.pinned_bytes(exact)
    assert exact < rounded < 2 * exact  # not already a power of two: the test tells the two sizes apart
    assert pc.pinned_bytes(4096) == 4096 and pc.pinned_bytes(4097) == 8192
    budget = (exact + rounded) // 2  # the exact size fits, the rounded one does not
    cache, _ = _host_store_of_a_gpu_run(tokenizer, monkeypatch, int(budget / pc.HOST_SHARE))
    assert "train" not in cache.stores and "more than the memory this run may use" in cache.disabled["train"]
    cache, _ = _host_store_of_a_gpu_run(tokenizer, monkeypatch, int(rounded / pc.HOST_SHARE) + 1)
    assert cache.stores["train"].flat.shape[0] * 32 * 4 == exact  # with room for the rounded size: stored


def test_dropping_the_pinned_host_store_gives_it_back_to_the_system(tokenizer, monkeypatch):
    """Bug: freed pinned blocks stay in PyTorch's host cache for the life of the process (torch.cuda.empty_cache()
    frees device memory only), so every run's host store kept its host RAM. Dropping the store (a new phase, the
    cache switched off) now empties that cache. Stand-in: torch._C._host_emptyCache, absent from this CPU build, is
    a recorder, and CUDA reports itself in use; that PyTorch really returns the memory only a GPU run shows."""
    from ftui import accel

    emptied: list[int] = []
    accel.empty_host_cache()  # CUDA unused (and no _host_emptyCache on a CPU-only build): a no-op, no AttributeError
    monkeypatch.setattr(torch._C, "_host_emptyCache", lambda: emptied.append(len(cache.stores)), raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    cache, _ = _host_store_of_a_gpu_run(tokenizer, monkeypatch, 10**12)
    assert "train" in cache.stores
    cache.release()
    assert cache.stores == {} and emptied == [0]  # emptied after the store's tensors were let go
    cache, _ = _host_store_of_a_gpu_run(tokenizer, monkeypatch, 10**12)
    cache.turn_off("test")
    assert cache.stores == {} and emptied == [0, 0]
    cache.device = "cpu"  # a CPU run pins nothing: no call
    cache.release()
    assert emptied == [0, 0]


def test_the_host_share_is_split_between_this_machines_processes(monkeypatch):
    """Nit: the processes sharing this machine's host memory were guessed from the GPU count; torchrun says how many
    run here (LOCAL_WORLD_SIZE). Stand-in: rank 1 of an 8-process run over two machines of 4, on a machine whose 8
    GPUs torch reports."""
    from ftui.distributed import Dist

    cache = PrefixCache(tiny_classifier("bert"), 1, "cuda", dist=Dist(rank=1, world=8))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert cache.local_world() == 4
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert cache.local_world() == 8  # without it: one process per GPU, at most the world
    assert PrefixCache(tiny_classifier("bert"), 1, "cuda").local_world() == 1  # alone

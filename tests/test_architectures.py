"""Every encoder family ftui supports, each as a tiny random checkpoint: summary, freeze depth 0..N with the right
modules frozen, the frozen-layer cache (or its self-check) giving the same run as recomputing, an MLP head, training,
predict, export and reload."""

import zipfile

import pytest
import torch
from helpers import FAMILY_EXTRAS, family_config
from transformers import AutoModel, AutoModelForSequenceClassification

from ftui.architecture import above_stack, apply_freeze, count_params, embedding_modules, encoder_layers, shared_modules
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.modeling import load_classifier
from ftui.runs import RunStatus

FAMILIES = list(FAMILY_EXTRAS)
# Five runs per family end to end: BERT in the default suite, the other families in the slow set (CI runs it).
LOOP_FAMILIES = [k if k == "bert" else pytest.param(k, marks=pytest.mark.slow) for k in FAMILIES]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """kind -> a saved tiny checkpoint (3 layers) with the packaged MiniLM's tokenizer."""
    from transformers import AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    tok = AutoTokenizer.from_pretrained(packaged_checkpoint())
    root = tmp_path_factory.mktemp("families")
    out = {}
    for kind in FAMILIES:
        torch.manual_seed(0)
        AutoModel.from_config(family_config(kind)).save_pretrained(root / kind)
        tok.save_pretrained(root / kind)
        out[kind] = root / kind
    return out


@pytest.mark.parametrize("kind", FAMILIES)
def test_freeze_depth_freezes_the_right_modules(kind, checkpoints, engine):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(family_config(kind, vocab_size=200))
    base = model.base_model
    layers = encoder_layers(base)
    summary = engine.model_summary(ModelConfig(source="local", checkpoint=str(checkpoints[kind])))
    assert summary.num_layers == len(layers) and summary.freeze_supported
    assert summary.architecture.startswith(type(model).__name__)  # the class that trains, not the saved one
    above = [base.get_submodule(n) for n in above_stack(base)]
    for depth in range(len(layers) + 1):
        apply_freeze(model, depth)
        for i, layer in enumerate(layers):
            assert all(p.requires_grad == (i >= depth) for p in layer.parameters()), (kind, depth, i)
        for mod in [*embedding_modules(base), *shared_modules(base).values()]:
            assert all(p.requires_grad == (depth == 0) for p in mod.parameters()), (kind, depth, mod)
        for mod in above:  # a pooler or a norm after the stack trains at every depth
            assert all(p.requires_grad for p in mod.parameters()), (kind, depth, mod)
        base_ids = {id(p) for p in base.parameters()}
        assert all(p.requires_grad for p in model.parameters() if id(p) not in base_ids)  # the head
    big = AutoModelForSequenceClassification.from_config(family_config(kind))
    for depth in range(len(layers) + 1):
        apply_freeze(big, depth)
        assert count_params(big, trainable_only=True) == summary.trainable(depth), (kind, depth)


def test_post_stack_norms_train_and_shared_position_tables_freeze():
    """The named cases: ModernBERT final_norm, EuroBERT norm train above the stack; DeBERTa's rel_embeddings (and its
    norm, and the conv after layer 0), MPNet's relative bias, ALBERT's embedding projection freeze with the bottom."""

    def parts(kind: str) -> tuple[set[str], set[str]]:
        base = AutoModelForSequenceClassification.from_config(family_config(kind, vocab_size=200)).base_model
        return set(above_stack(base)), set(shared_modules(base))

    assert parts("modernbert")[0] == {"final_norm"} and parts("eurobert")[0] == {"norm"}
    assert parts("deberta-v2-conv")[1] == {"encoder.rel_embeddings", "encoder.LayerNorm", "encoder.conv"}
    assert parts("mpnet")[1] == {"encoder.relative_attention_bias"}
    assert parts("albert")[1] == {"encoder.embedding_hidden_mapping_in"}
    assert parts("bert") == ({"pooler"}, set())


def run_of(engine, ckpt, depth: int, cache: bool, head: str = "auto"):
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(ckpt), freeze_depth=depth, head=head),
                    TrainConfig(epochs=2, batch_size=64, learning_rate=1e-3, max_length=64, frozen_cache=cache))  # fmt: skip
    run = engine.start_run(cfg)
    assert run.done.wait(300) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
    return run


@pytest.mark.parametrize("kind", LOOP_FAMILIES)
def test_cache_train_predict_export_reload(kind, checkpoints, engine, tmp_path):
    ckpt = checkpoints[kind]
    n = engine.model_summary(ModelConfig(source="local", checkpoint=str(ckpt))).num_layers
    for depth in sorted({1, max(1, n - 1)}):
        cached, plain = run_of(engine, ckpt, depth, True), run_of(engine, ckpt, depth, False)
        # two epochs: the second reads the cache, which passed its self-check (no notice), and gives the same run
        notices = [e.get("message") for e in cached.events() if e["type"] == "notice"]
        assert not notices, (kind, depth, notices)
        assert cached.result["test_loss"] == pytest.approx(plain.result["test_loss"], abs=1e-5), (kind, depth)
    mlp = run_of(engine, ckpt, 1, True, head="mlp")
    text = "A warm, funny film with a terrific cast."
    served = engine.predict(text, f"run:{mlp.run_id}")
    with zipfile.ZipFile(engine.export_zip(mlp.run_id)) as z:
        z.extractall(tmp_path / "unzipped")
    model, tok, names = load_classifier(tmp_path / "unzipped" / "model")
    with torch.no_grad():
        probs = torch.softmax(model(**tok(text, return_tensors="pt")).logits, -1)[0].tolist()
    assert names == list(served) and probs == pytest.approx(list(served.values()), abs=1e-5)


def test_modernbert_uses_sdpa_and_never_compiles(checkpoints, monkeypatch):
    """No surprise torch.compile at run time (transformers 5 dropped reference_compile; this keeps it that way)."""
    from ftui.modeling import build_model

    def refuse(*a, **k):
        raise AssertionError("torch.compile was called")

    monkeypatch.setattr(torch, "compile", refuse)
    model = build_model(ModelConfig(source="local", checkpoint=str(checkpoints["modernbert"])), ["a", "b"])
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        model(input_ids=torch.tensor([[101, 2204, 102]]), attention_mask=torch.ones(1, 3, dtype=torch.long))


@pytest.mark.slow
@pytest.mark.parametrize("kind", FAMILIES)
def test_every_family_exports_to_onnx_with_the_same_labels(kind, checkpoints, engine):
    """About 7 s per family (the exporter traces the model): in the slow suite."""
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(checkpoints[kind])),
                    TrainConfig(epochs=1, batch_size=64, learning_rate=1e-3, max_length=64))  # fmt: skip
    run = engine.start_run(cfg)
    assert run.done.wait(300) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
    report = engine.export_onnx(run.run_id)
    assert report.fp32_agreement == 1.0 and report.fp32_max_abs_diff < 1e-4, (kind, report)
    text = "A warm, funny film."
    torch_p, onnx_p = engine.predict(text, f"run:{run.run_id}"), engine.predict(text, f"run:{run.run_id}", "onnx")
    assert all(abs(torch_p[k] - onnx_p[k]) < 1e-4 for k in torch_p)


def test_model_tab_says_what_else_is_frozen_and_what_always_trains(checkpoints, engine):
    from ftui.ui.model_tab import trainable_md

    def summary(kind: str):
        return engine.model_summary(ModelConfig(source="local", checkpoint=str(checkpoints[kind])))

    deberta, modern, albert = summary("deberta-v2"), summary("modernbert"), summary("albert")
    assert "also frozen: `encoder.rel_embeddings`, `encoder.LayerNorm`" in trainable_md(deberta, 1)
    assert "always trains: `final_norm`" in trainable_md(modern, 2)
    assert "freeze depth 1 freezes all of them" in trainable_md(albert, 1)
    assert all("also frozen" not in trainable_md(s, 0) and "always trains" not in trainable_md(s, 0)
               for s in (deberta, modern, albert))  # fmt: skip

"""Freeze depth per parameter across encoder families, summaries, heads, save/load."""

import pytest
import torch
from helpers import tiny_config
from transformers import AutoModelForSequenceClassification

from ftui.architecture import apply_freeze, count_params, encoder_layers, frozen_prefix
from ftui.config import ModelConfig
from ftui.errors import ModelError
from ftui.model_card import limitations_section, strip_front_matter, summarize
from ftui.modeling import MLPClassifier, build_model, load_classifier, save_classifier

FAMILIES = ["bert", "distilbert", "roberta", "electra"]


def seq_model(kind: str, layers: int = 3):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(tiny_config(kind, layers=layers, vocab_size=100))


@pytest.mark.parametrize("kind", FAMILIES)
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_freeze_depth_sets_requires_grad_per_parameter(kind, depth):
    model = seq_model(kind)
    apply_freeze(model, depth)
    base = model.base_model
    layers = encoder_layers(base)
    assert len(layers) == 3
    for i, layer in enumerate(layers):
        assert all(p.requires_grad == (i >= depth) for p in layer.parameters()), (kind, i)
    emb = base.embeddings
    assert all(p.requires_grad == (depth == 0) for p in emb.parameters())
    base_ids = {id(p) for p in base.parameters()}
    head = [p for p in model.parameters() if id(p) not in base_ids]
    assert head and all(p.requires_grad for p in head)  # the head always trains
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        assert all(p.requires_grad for p in pooler.parameters())


def test_depth_above_layer_count_is_refused():
    with pytest.raises(ModelError, match="above this model's 3 layers"):
        apply_freeze(seq_model("bert"), 4)


def test_unsupported_architecture_gets_a_message_not_a_crash():
    from transformers import AutoConfig

    # Funnel pools between blocks of blocks: no single stack of layers to count a depth in
    config = AutoConfig.for_model("funnel", vocab_size=100, d_model=32, n_head=2, d_head=16, d_inner=64, block_sizes=[1, 1])
    model = AutoModelForSequenceClassification.from_config(config)
    apply_freeze(model, 0)  # depth 0 works for any architecture
    with pytest.raises(ModelError, match="not supported for 'funnel'.*ModernBERT, ALBERT"):
        apply_freeze(model, 1)


def test_frozen_prefix_lists_embeddings_and_bottom_layers():
    model = seq_model("bert")
    mods = frozen_prefix(model, 2)
    layers = encoder_layers(model.base_model)
    assert mods[0] is model.base_model.embeddings and mods[1:] == [layers[0], layers[1]]
    assert frozen_prefix(model, 0) == []


def test_summary_trainable_counts_match_real_freezing(tiny_bert_dir):
    for head in ("auto", "mlp"):
        cfg = ModelConfig(source="local", checkpoint=str(tiny_bert_dir), head=head)
        s = summarize(cfg)
        assert s.num_layers == 2 and s.hidden_size == 32 and s.freeze_supported
        assert "Random weights" in s.card_limitations
        for depth in range(3):
            model = build_model(cfg, ["a", "b"])
            apply_freeze(model, depth)
            assert count_params(model) == s.total_params
            assert count_params(model, trainable_only=True) == s.trainable(depth), (head, depth)


def test_packaged_minilm_summary():
    s = summarize(ModelConfig())
    assert (s.model_type, s.num_layers, s.hidden_size) == ("bert", 6, 384)
    assert 22_000_000 < s.total_params < 23_000_000
    assert s.trainable(6) < s.trainable(3) < s.trainable(0) == s.total_params


@pytest.mark.parametrize("head", ["auto", "mlp"])
def test_save_and_load_round_trip(tmp_path, tiny_bert_dir, head):
    from transformers import AutoTokenizer

    cfg = ModelConfig(source="local", checkpoint=str(tiny_bert_dir), head=head, mlp_hidden=16)
    model = build_model(cfg, ["neg", "pos", "mixed"]).eval()
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    save_classifier(model, tok, tmp_path / "m", ["neg", "pos", "mixed"])
    again, tok2, names = load_classifier(tmp_path / "m")
    assert names == ["neg", "pos", "mixed"] and isinstance(again, MLPClassifier) == (head == "mlp")
    enc = tok2(["a good day", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        b = again(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert torch.allclose(a, b, atol=1e-6)


def test_limitations_section_extracts_the_right_headings():
    card = "# M\n\nintro\n\n## Bias, Risks, and Limitations\n\nIt is biased.\n\n### Details\n\nmore\n\n## Training\n\nno"
    out = limitations_section(card)
    assert "It is biased." in out and "more" in out and "Training" not in out
    assert limitations_section("# nothing here") == ""


def test_missing_local_checkpoint_is_explained(tmp_path):
    with pytest.raises(ModelError):
        summarize(ModelConfig(source="local", checkpoint=str(tmp_path)))


def test_remote_code_checkpoint_is_refused_without_trust(tmp_path):
    import json

    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "custom-thing", "auto_map": {"AutoConfig": "x.CustomConfig"}})
    )
    with pytest.raises(ModelError, match="Trust remote code"):
        summarize(ModelConfig(source="local", checkpoint=str(tmp_path)))


def test_card_front_matter_is_stripped():
    assert strip_front_matter("---\nlicense: mit\ntags:\n- x\n---\n# Title\n\ntext") == "# Title\n\ntext"
    assert strip_front_matter("# No metadata\n---\nrule") == "# No metadata\n---\nrule"
    s = summarize(ModelConfig())
    assert not s.card.startswith("---") and "license: apache-2.0" not in s.card


@pytest.mark.parametrize(
    ("model_type", "table", "limit"),
    [("bert", 512, 512), ("distilbert", 512, 512), ("electra", 512, 512), ("roberta", 514, 512),
     ("xlm-roberta", 514, 512), ("mpnet", 514, 512), ("modernbert", 8192, 8192)],
)  # fmt: skip
def test_position_limit_per_family(model_type, table, limit):
    from transformers import AutoConfig

    from ftui.architecture import position_limit

    assert position_limit(AutoConfig.for_model(model_type, max_position_embeddings=table)) == limit


def test_relative_position_models_have_no_fixed_limit():
    from transformers import AutoConfig

    from ftui.architecture import position_limit

    assert position_limit(AutoConfig.for_model("deberta-v2", position_biased_input=False)) is None


def test_summary_states_the_longest_input_and_a_longer_max_length_is_refused_before_training(engine, tiny_bert_dir):
    from ftui.config import DataConfig, RunConfig, TrainConfig
    from ftui.errors import ConfigError

    cfg = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    assert engine.model_summary(cfg).max_length == 128  # the tiny fixture's position table
    assert engine.model_summary(ModelConfig()).max_length == 512  # the packaged MiniLM
    with pytest.raises(ConfigError, match="max sequence length 256 is more than .* can read \\(128 tokens\\)"):
        engine.start_run(RunConfig(DataConfig(), cfg, TrainConfig(max_length=256)))
    assert engine.current_run() is None and engine.runs() == []  # nothing started, nothing recorded


def test_a_run_trained_with_remote_code_reloads_for_its_test_and_predict(engine, tmp_path):
    """Case: training completed, then testing the best checkpoint and Predict failed with "contains custom code ...
    pass trust_remote_code=True" (the reload never passed the run's setting)."""
    import json

    from transformers import AutoTokenizer, BertForSequenceClassification

    from ftui.config import DataConfig, RunConfig, TrainConfig
    from ftui.modeling import packaged_checkpoint
    from ftui.runs import RunStatus

    ckpt = tmp_path / "custom"
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_config("bert")).save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(packaged_checkpoint()).save_pretrained(ckpt)
    (ckpt / "configuration_custom.py").write_text(
        "from transformers import BertConfig\nclass CustomConfig(BertConfig):\n    model_type = 'custom-bert'\n"
    )
    (ckpt / "modeling_custom.py").write_text(
        "from transformers import BertForSequenceClassification, BertModel\n"
        "from .configuration_custom import CustomConfig\n"
        "class CustomModel(BertModel):\n    config_class = CustomConfig\n"
        "class CustomForSequenceClassification(BertForSequenceClassification):\n    config_class = CustomConfig\n"
    )
    config = json.loads((ckpt / "config.json").read_text())
    config.update(model_type="custom-bert", auto_map={
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModel": "modeling_custom.CustomModel",
        "AutoModelForSequenceClassification": "modeling_custom.CustomForSequenceClassification",
    })  # fmt: skip
    (ckpt / "config.json").write_text(json.dumps(config))
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(ckpt), trust_remote_code=True),
                    TrainConfig(epochs=1, max_length=64))  # fmt: skip
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30)
    assert run.status == RunStatus.COMPLETED, run.error
    assert isinstance(run.result["test_accuracy"], float)
    probs = engine.predict("a fine film", f"run:{run.run_id}")
    assert abs(sum(probs.values()) - 1) < 1e-5

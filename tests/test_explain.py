"""Token attributions: completeness of integrated gradients, a toy model whose class one token decides, word joining,
long input, and the engine's refusals."""

import pytest
import torch
from torch import nn

from ftui.config import ModelConfig
from ftui.errors import FtuiError
from ftui.explain import Explanation, explain
from ftui.modeling import build_model, load_tokenizer


@pytest.fixture(scope="module")
def tiny(tiny_bert_dir):
    cfg = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    gen = torch.Generator().manual_seed(3)
    return build_model(cfg, ["neg", "pos"], generator=gen).eval(), load_tokenizer(cfg)


def test_integrated_gradients_add_up_to_the_logit_gap(tiny):
    model, tok = tiny
    text = "The plot was thin but the actors were wonderful and the music soared."
    ex = explain(model, tok, ["neg", "pos"], text, max_length=64, method="ig", steps=64)
    # Independently: the logit for the text and for the baseline (ordinary tokens -> [PAD], specials kept).
    enc = tok(text, return_tensors="pt", return_special_tokens_mask=True)
    special = enc.pop("special_tokens_mask").bool()
    base_ids = torch.where(special, enc["input_ids"], torch.full_like(enc["input_ids"], tok.pad_token_id))
    with torch.no_grad():
        logit = model(**enc).logits[0]
        base = model(**{**enc, "input_ids": base_ids}).logits[0]
    target = int(logit.argmax())
    assert ex.label == ["neg", "pos"][target]
    assert ex.logit == pytest.approx(float(logit[target]), abs=1e-5)
    assert ex.baseline_logit == pytest.approx(float(base[target]), abs=1e-5)
    gap = float(logit[target] - base[target])
    assert abs(sum(ex.scores) - gap) <= abs(ex.delta) + 1e-5  # completeness, up to the reported delta
    assert abs(ex.delta) < 0.05 * abs(gap) + 1e-3  # and the delta itself is small at 64 steps
    assert len(ex.tokens) == enc["input_ids"].shape[1] and ex.tokens[0] == "[CLS]" and ex.special[0]


class OneWordDecides(nn.Module):
    """A toy classifier: class 1 scores tanh(sum of each token's first embedding coordinate); only 'terrible' has a
    large one, so that token alone decides."""

    def __init__(self, vocab: int, decisive: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 4)
        with torch.no_grad():
            self.emb.weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(0))
            self.emb.weight[decisive, 0] = 3.0

    def get_input_embeddings(self) -> nn.Module:
        return self.emb

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        s = torch.tanh((self.emb(input_ids)[..., 0] * attention_mask).sum(-1))
        return type("Out", (), {"logits": torch.stack([-s, s], dim=-1)})()


@pytest.mark.parametrize("method", ["ig", "fast"])
def test_the_deciding_token_gets_the_largest_attribution(tiny, method):
    _, tok = tiny
    decisive = tok.convert_tokens_to_ids("terrible")
    model = OneWordDecides(tok.vocab_size, decisive)
    ex = explain(model, tok, ["ok", "bad"], "the food was terrible and the staff were slow", method=method)
    assert ex.label == "bad"
    best = max(range(len(ex.scores)), key=ex.scores.__getitem__)
    assert ex.tokens[best] == "terrible"
    assert ex.top(1)[0][0] == "terrible"
    assert (ex.delta is None) == (method == "fast")


def test_word_pieces_are_joined_back():
    wp = Explanation(["[CLS]", "un", "##believ", "##able", "film", "[SEP]"], [0.0, 1.0, 2.0, 3.0, -1.0, 0.5], "pos", 0.9,
                     "ig", 0.0, 1.0, 0.0, False, [True, False, False, False, False, True])  # fmt: skip
    assert wp.words() == [("unbelievable", 6.0), ("film", -1.0)]
    bpe = Explanation(["<s>", "Ġthe", "at", "re", "Ġwas", "</s>"], [0, 1.0, 1.0, 1.0, 2.0, 0], "pos", 0.9, "ig", 0.0,
                      1.0, 0.0, False, [True, False, False, False, False, True])  # fmt: skip
    assert bpe.words() == [("theatre", 3.0), ("was", 2.0)]
    assert bpe.top(1) == [("theatre", 3.0)]


def test_a_megabyte_of_text_is_cut_to_what_the_model_reads_and_says_so(tiny):
    model, tok = tiny
    ex = explain(model, tok, ["neg", "pos"], "word " * 200_000, max_length=32, method="fast")
    assert ex.truncated and len(ex.tokens) == 32
    short = explain(model, tok, ["neg", "pos"], "a short review", max_length=32, method="fast")
    assert not short.truncated


def test_sentence_pairs_are_explained_across_both_texts(tiny):
    model, tok = tiny
    ex = explain(model, tok, ["neg", "pos"], "A man is playing a guitar.", "Someone plays music.", method="ig", steps=8)
    assert ex.tokens.count("[SEP]") == 2 and "music" in ex.tokens and "guitar" in ex.tokens


def test_bad_requests_get_messages(tiny):
    model, tok = tiny
    with pytest.raises(FtuiError, match="no text"):
        explain(model, tok, ["neg", "pos"], "   ")
    with pytest.raises(FtuiError, match="Unknown explanation method"):
        explain(model, tok, ["neg", "pos"], "good", method="shap")  # type: ignore[arg-type]
    with pytest.raises(FtuiError, match="does not exist"):
        explain(model, tok, ["neg", "pos"], "good", target=5)


def test_engine_explains_a_run_and_refuses_a_baseline(engine, tiny_bert_dir):
    from ftui.config import DataConfig, RunConfig, TrainConfig
    from ftui.runs import RunStatus

    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1))
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED
    ex = engine.explain("A warm and funny film.", f"run:{run.run_id}", "fast")
    probs = engine.predict("A warm and funny film.", f"run:{run.run_id}")
    assert ex.label == max(probs, key=probs.__getitem__) and ex.probability == pytest.approx(probs[ex.label], abs=1e-5)
    base = engine.start_run(RunConfig(DataConfig(), ModelConfig(), TrainConfig(), kind="baseline", baseline="tfidf"))
    assert base.done.wait(60) and engine.join(30) and base.status == RunStatus.COMPLETED
    with pytest.raises(FtuiError, match="baseline"):
        engine.explain("good", f"run:{base.run_id}")

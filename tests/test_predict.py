"""Prediction: batching keeps the input order and the same probabilities as one at a time; table parsing."""

import pandas as pd
import pytest

from ftui.config import ModelConfig
from ftui.errors import FtuiError
from ftui.modeling import build_model, load_tokenizer
from ftui.predict import Predictor, int8_loader, predictions_frame, texts_from_lines, texts_from_table


@pytest.fixture(scope="module")
def loader(tiny_bert_dir):
    cfg = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))

    def load():
        return build_model(cfg, ["neg", "pos"]).eval(), load_tokenizer(cfg), ["neg", "pos"]

    return load


def test_batch_matches_one_at_a_time_in_input_order(loader):
    texts = ["ok", "a much longer review that goes on and on about the plot " * 3, "bad", "fine enough I suppose"]
    pred = Predictor()
    together = pred.predict("m", loader, texts, batch_size=2)
    alone = [pred.predict("m", loader, [t])[0] for t in texts]
    assert len(together) == 4
    for a, b in zip(together, alone, strict=True):
        assert a.keys() == {"neg", "pos"}
        assert a["pos"] == pytest.approx(b["pos"], abs=1e-5)


def test_long_text_is_cut_not_refused(loader):
    out = Predictor().predict("m", loader, ["word " * 100_000], max_length=16)
    assert abs(sum(out[0].values()) - 1) < 1e-5


def test_texts_from_table_by_name_or_type():
    df = pd.DataFrame({"id": [1, 2, 3], "Review": ["good", "", "bad"]})
    assert texts_from_table(df) == ["good", "bad"]
    assert texts_from_table(pd.DataFrame({"n": [1, 2], "words": ["a b", "c"]})) == ["a b", "c"]
    with pytest.raises(FtuiError, match="no column of text"):
        texts_from_table(pd.DataFrame({"n": [1, 2]}))


def test_lines_and_frame():
    texts = texts_from_lines("good\n\n  bad  \n")
    assert texts == ["good", "bad"]
    frame = predictions_frame(texts, [{"neg": 0.2, "pos": 0.8}, {"neg": 0.9, "pos": 0.1}])
    assert frame["label"].tolist() == ["pos", "neg"] and frame["confidence"].tolist() == [0.8, 0.9]
    assert list(frame.columns) == ["text", "label", "confidence", "neg", "pos"]


def test_int8_copy_is_quantized_and_close(loader):
    model, _, _ = int8_loader(loader)()
    assert any("quantized" in type(m).__module__ for m in model.modules())
    texts = ["good", "bad service and a long wait", "fine"]
    pred = Predictor()
    fp32 = pred.predict("fp32", loader, texts)
    int8 = pred.predict("int8", int8_loader(loader), texts)
    for a, b in zip(fp32, int8, strict=True):
        assert a["pos"] == pytest.approx(b["pos"], abs=0.05)

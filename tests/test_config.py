"""Config validation returns one clear message per problem."""

import math

from ftui.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    is_hub_id,
    validate_data,
    validate_model,
    validate_run,
    validate_train,
)


def test_defaults_are_valid():
    assert validate_run(RunConfig()) == []


def test_out_of_range_hyperparameters_each_get_a_message():
    bad = TrainConfig(
        learning_rate=-1,
        batch_size=0,
        epochs=math.nan,
        warmup_ratio=0.9,
        max_length=4,
        precision="int4",
        grad_accum=0,
        evals_per_epoch=0,
        early_stopping_patience=-2,
        seed=-1,
        weight_decay=math.inf,
    )
    msgs = validate_train(bad)
    for word in (
        "learning rate",
        "batch size",
        "epochs",
        "warmup",
        "max sequence length",
        "precision",
        "gradient accumulation",
        "evaluations per epoch",
        "patience",
        "seed",
        "weight decay",
    ):
        assert any(word in m for m in msgs), (word, msgs)


def test_non_integer_batch_size_is_rejected():
    assert any("batch size" in m for m in validate_train(TrainConfig(batch_size=2.5)))
    assert any("batch size" in m for m in validate_train(TrainConfig(batch_size=True)))


def test_hub_ids_reject_urls_and_paths():
    assert is_hub_id("cornell-movie-review-data/rotten_tomatoes")
    assert is_hub_id("imdb")
    for bad in ("http://169.254.169.254/", "file:///etc", "../../etc", "/abs/path", "a/b/c", "a/../b"):
        assert not is_hub_id(bad), bad
    assert validate_data(DataConfig(source="hub", dataset_id="file:///etc"))
    assert validate_model(ModelConfig(source="hub", checkpoint="http://x/y"))


def test_local_sources_need_existing_paths(tmp_path):
    assert any("no file or folder" in m for m in validate_data(DataConfig(source="local", dataset_id=str(tmp_path / "nope"))))
    assert validate_data(DataConfig(source="local", dataset_id=str(tmp_path))) == []
    assert any("config.json" in m for m in validate_model(ModelConfig(source="local", checkpoint=str(tmp_path))))


def test_round_trip_through_dict():
    cfg = RunConfig(data=DataConfig(text_columns=("a", "b")), model=ModelConfig(freeze_depth=3), train=TrainConfig(epochs=1.5))
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg


def test_configs_are_frozen():
    import dataclasses

    import pytest

    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().batch_size = 3  # type: ignore[misc]

"""Local data for a Jobs run (ftui/jobs_data.py): the copy on the bucket per content, the job's config pointed at it,
the way back to this machine's mount, and what a resumed job may change of a run's config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ftui import jobs_data
from ftui.config import DataConfig, RunConfig, TrainConfig
from ftui.errors import FtuiError


def _local(path: Path) -> RunConfig:
    return RunConfig(data=DataConfig(source="upload", dataset_id=str(path)), train=TrainConfig(max_minutes=5))


def test_a_file_is_copied_once_per_content_and_the_config_points_at_the_copy(tmp_path: Path) -> None:
    src = tmp_path / "reviews (final).csv"
    src.write_text("text,label\ngood,1\nbad,0\n")
    bucket = tmp_path / "bucket"
    cfg, upload = jobs_data.placed(_local(src), "/data")
    assert upload is not None and upload.dest == f"ftui-data/{jobs_data.content_hash(src)}/reviews_final_.csv"
    assert cfg.data.source == "local" and cfg.data.dataset_id == f"/data/{upload.dest}"
    assert cfg.data.uploaded_from == str(src.resolve()) and cfg.train == _local(src).train  # only the data moved
    copy = jobs_data.stage(upload, bucket)
    assert copy.read_bytes() == src.read_bytes()
    copy.write_text("left alone")  # a second stage of the same content copies nothing
    assert jobs_data.stage(upload, bucket).read_text() == "left alone"
    src.write_text("text,label\ngood,1\n")  # new content: a new folder
    assert jobs_data.placed(_local(src), "/data")[1].dest != upload.dest


def test_a_folder_of_splits_travels_whole(tmp_path: Path) -> None:
    src = tmp_path / "splits"
    (src / "sub").mkdir(parents=True)
    (src / "train.csv").write_text("text,label\na,0\n")
    (src / "sub" / "notes.txt").write_text("x")
    cfg, upload = jobs_data.placed(_local(src), "/data")
    copy = jobs_data.stage(upload, tmp_path / "bucket")
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == ["sub/notes.txt", "train.csv"]
    assert cfg.data.dataset_id.endswith("/splits")


def test_hub_data_and_a_copy_already_on_the_bucket_are_left_as_they_are(tmp_path: Path) -> None:
    hub = RunConfig(data=DataConfig(source="hub", dataset_id="imdb"))
    assert jobs_data.placed(hub, "/data") == (hub, None)
    there = RunConfig(data=DataConfig(source="local", dataset_id="/data/ftui-data/abc/x.csv", uploaded_from="/home/a/x.csv"))
    assert jobs_data.placed(there, "/data") == (there, None)
    with pytest.raises(FtuiError, match="No file or folder at"):
        jobs_data.placed(_local(tmp_path / "gone.csv"), "/data")


def test_a_jobs_copy_reads_from_where_this_machine_mounts_the_bucket(tmp_path: Path) -> None:
    data = DataConfig(source="local", dataset_id="/data/ftui-data/abc/x.csv", uploaded_from="/home/a/x.csv")
    assert jobs_data.on_this_machine(data, "/data", tmp_path).dataset_id == str(tmp_path / "ftui-data/abc/x.csv")
    assert jobs_data.on_this_machine(data, "/data", None) == data  # no bucket here: unchanged
    plain = DataConfig(source="local", dataset_id="/data/mine.csv")  # the user's own file, not a job's copy
    assert jobs_data.on_this_machine(plain, "/data", tmp_path) == plain


def test_a_resumed_job_changes_only_where_the_data_is_its_cap_and_its_processes() -> None:
    own = RunConfig(data=DataConfig(source="upload", dataset_id="/tmp/x.csv"), train=TrainConfig(max_minutes=0))
    moved = replace(own, data=replace(own.data, source="local", dataset_id="/data/ftui-data/h/x.csv",
                                      uploaded_from="/tmp/x.csv"),
                    train=replace(own.train, max_minutes=10, processes=2))  # fmt: skip
    assert jobs_data.resumed_as(own, moved) == moved
    with pytest.raises(FtuiError, match="not the run's own"):
        jobs_data.resumed_as(own, replace(moved, train=replace(moved.train, learning_rate=1.0)))

"""Local data for a Jobs run: copied onto the bucket once per content, and the job's DataConfig pointed at the copy."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from ftui.config import DataConfig, RunConfig
from ftui.errors import FtuiError

DATA_DIR = "ftui-data"  # under the bucket: one folder per content hash, holding the file (or folder) by its name
DONE = ".complete"  # written last: a folder without it is a copy that did not finish


@dataclass(frozen=True)
class Upload:
    """A local file or folder a job reads, and where its copy lives on the bucket."""

    source: Path = field(metadata={"help": "the file or folder on this machine"})
    dest: str = field(metadata={"help": "its copy, relative to the bucket: ftui-data/<content hash>/<name>"})


def _files(src: Path) -> list[tuple[str, Path]]:
    """(path relative to `src`, file) of a data file ('' for itself) or of every file in a data folder."""
    if src.is_file():
        return [("", src)]
    return [(p.relative_to(src).as_posix(), p) for p in sorted(src.rglob("*")) if p.is_file()]


def content_hash(src: Path) -> str:
    """A digest of the names and bytes of a data file or folder: one copy on the bucket per content."""
    digest = hashlib.sha256()
    for rel, path in _files(src):
        one = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                one.update(chunk)
        digest.update(rel.encode() + b"\0" + one.digest())
    return digest.hexdigest()[:16]


def _on_bucket(data: DataConfig, mount: str) -> bool:
    """The data is already a copy on the bucket (a run that trained on Jobs, resumed on Jobs again)."""
    return bool(data.uploaded_from) and data.dataset_id.startswith(f"{mount}/{DATA_DIR}/")


def placed(cfg: RunConfig, mount: str) -> tuple[RunConfig, Upload | None]:
    """The config a job reads: local data (a Data-tab upload or a path) pointed at its copy under `mount`, with where it
    came from kept in `uploaded_from`; and the copy to make (None when the data is not local or already there)."""
    data = cfg.data
    if data.source not in ("upload", "local") or _on_bucket(data, mount):
        return cfg, None
    src = Path(data.dataset_id).expanduser().resolve()
    if not src.exists():
        raise FtuiError(f"No file or folder at '{data.dataset_id}' to copy to the bucket for the job.", "Check the path.")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", src.name).strip("._") or "data"
    dest = f"{DATA_DIR}/{content_hash(src)}/{name}"
    moved = replace(data, source="local", dataset_id=f"{mount}/{dest}", uploaded_from=data.uploaded_from or str(src))
    return replace(cfg, data=moved), Upload(src, dest)


def stage(upload: Upload, bucket_dir: Path) -> Path:
    """Copy the data into the mounted bucket (once per content hash: a second run on the same file copies nothing)."""
    dest = bucket_dir / upload.dest
    done = dest.parent / DONE
    if done.is_file():
        return dest
    tmp = dest.parent.with_name(dest.parent.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, path in _files(upload.source):
        target = tmp / dest.name / rel if rel else tmp / dest.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (tmp / DONE).write_text(upload.dest)
    shutil.rmtree(dest.parent, ignore_errors=True)
    tmp.rename(dest.parent)
    return dest


def on_this_machine(data: DataConfig, mount: str, bucket_dir: Path | None) -> DataConfig:
    """A job's copy of local data as this machine sees it (the bucket mounted at `bucket_dir`, not at `mount`): what
    a run that trained on Jobs reads when it resumes or is scored here."""
    if bucket_dir is None or not _on_bucket(data, mount) or Path(data.dataset_id).exists():
        return data
    return replace(data, dataset_id=str(bucket_dir / data.dataset_id[len(mount) + 1 :]))


def resumed_as(own: RunConfig, given: RunConfig) -> RunConfig:
    """The config a run resumes with in a job: its own, with only what the place changes taken from `given` (where its
    data is, the job's time cap, the job's processes); anything else differing is a config that is not this run's."""
    data = replace(own.data, source=given.data.source, dataset_id=given.data.dataset_id,
                   uploaded_from=given.data.uploaded_from)  # fmt: skip
    train = replace(own.train, max_minutes=given.train.max_minutes, processes=given.train.processes)
    moved = replace(own, data=data, train=train)
    if moved != given:
        raise FtuiError("The settings handed to this resume are not the run's own.", "Resume the run from the app.")
    return moved

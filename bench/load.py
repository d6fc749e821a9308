"""Load benchmark: 100 polling tabs and 200 concurrent predictions, with no run and while a run trains (same process).

The Train tab's timer tick is called over raw HTTP with the run's current version, as an idle tab does once a
second; predictions go through gradio_client. Prints p50/p95 for both situations side by side, the tick handler's
own cost, and the share of ticks answered by `gr.skip()` (nothing redrawn, so plots keep their zoom).

    python bench/load.py                      # packaged MiniLM trains on the bundled demo meanwhile
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import percentile  # first: sets the environment (offline, tokenizers), makes ftui importable


def pct(xs: list[float], q: float) -> float:
    return round(percentile(xs, q), 1)


def tick(c: Any, url: str, index: int, version: int, session: str) -> tuple[bool, int]:
    """One raw tick as a tab sends it (its version lives in the session's state); (was it a skip, version)."""
    payload = {"data": [version], "fn_index": index, "session_hash": session, "event_data": None, "trigger_id": None}
    c.post(f"{url}/gradio_api/queue/join", json=payload)
    with c.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    data = (msg.get("output") or {}).get("data") or [None] * 4
                    skipped = data[1] == {"__type__": "update"}  # no chart redrawn (the status line ticks anyway)
                    return skipped, data[3] if isinstance(data[3], int) else version
    raise RuntimeError("no answer to a tick")


def poll(url: str, index: int, tabs: int, rounds: int) -> tuple[list[float], int]:
    """`tabs` clients tick `rounds` times each, once a second, keeping their version like a browser tab does."""
    import httpx

    lat: list[float] = []
    skips = 0
    lock = threading.Lock()

    def tab(_: int) -> None:
        nonlocal skips
        version, session = -1, uuid.uuid4().hex[:12]  # one session per tab, as a browser tab has
        with httpx.Client(timeout=60) as c:
            _, version = tick(c, url, index, version, session)  # first draw
            for _ in range(rounds):
                t0 = time.perf_counter()
                skipped, version = tick(c, url, index, version, session)
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt * 1000)
                    skips += int(skipped)
                time.sleep(max(0.0, 1.0 - dt))  # a tab polls once a second

    with ThreadPoolExecutor(max_workers=tabs) as pool:
        list(pool.map(tab, range(tabs)))
    return lat, skips


def serve(port_file: Path, go_busy: Path) -> None:
    """Child process: the app, a first finished run, then (when asked) a long run that keeps training."""
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.ui import create_app, launch_kwargs

    engine = Engine(runs_dir=tempfile.mkdtemp(prefix="ftui-load-"), hub_status=HubStatus(False, "offline"))
    app = create_app(engine)
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    first = engine.start_run(RunConfig(DataConfig(), ModelConfig(), TrainConfig(epochs=1)))
    first.done.wait(600)
    engine.join(60)
    render = next(f.fn for f in app.fns.values() if f.name == "render")
    version = render(-1)[3]
    t0 = time.perf_counter()
    for _ in range(1000):
        render(version)
    handler_us = (time.perf_counter() - t0) / 1000 * 1e6
    index = next(i for i, f in app.fns.items() if f.name == "render")
    info = {"url": app.local_url.rstrip("/"), "index": index, "key": f"run:{first.run_id}", "handler_us": handler_us}
    port_file.write_text(json.dumps(info))
    while not go_busy.exists():
        time.sleep(0.2)
    busy = engine.start_run(RunConfig(DataConfig(), ModelConfig(), TrainConfig(epochs=500)))
    v = 0
    while not any(e["type"] == "train" for e in busy.events()):
        v = busy.wait_for_change(v, 60)
    (go_busy.parent / "busy").write_text("1")
    busy.done.wait(3600)


def predict_burst(url: str, key: str, n: int) -> list[float]:
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(8)]

    def ask(i: int) -> float:
        t0 = time.perf_counter()
        clients[i % 8].predict(f"A review, number {i}, that was fine.", key, api_name="/predict")
        return (time.perf_counter() - t0) * 1000

    with ThreadPoolExecutor(max_workers=64) as pool:
        return list(pool.map(ask, range(n)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tabs", type=int, default=100)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--predictions", type=int, default=200)
    p.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return {}

    tmp = Path(tempfile.mkdtemp(prefix="ftui-loadbench-"))
    info_file, go_busy = tmp / "info.json", tmp / "go"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(info_file), str(go_busy)])
    try:
        while not info_file.exists():
            if server.poll() is not None:
                raise SystemExit("the app process ended early")
            time.sleep(0.2)
        info = json.loads(info_file.read_text())
        url, index, key = info["url"], info["index"], info["key"]
        idle_ticks, idle_skips = poll(url, index, args.tabs, args.rounds)
        idle_pred = predict_burst(url, key, args.predictions)
        go_busy.write_text("1")
        while not (tmp / "busy").exists():
            time.sleep(0.2)
        busy_ticks, busy_skips = poll(url, index, args.tabs, args.rounds)
        busy_pred = predict_burst(url, key, args.predictions)
    finally:
        server.kill()
        server.wait(30)
    out = {
        "device": f"cpu ({os.cpu_count()} cores); app in one process, load from another",
        "tick_handler_us": round(info["handler_us"], 1),
        "ticks_ms": {
            "idle": {"p50": pct(idle_ticks, 50), "p95": pct(idle_ticks, 95), "n": len(idle_ticks), "skipped": idle_skips},
            "training": {"p50": pct(busy_ticks, 50), "p95": pct(busy_ticks, 95), "n": len(busy_ticks), "skipped": busy_skips},
        },
        "predict_ms": {
            "idle": {"p50": pct(idle_pred, 50), "p95": pct(idle_pred, 95), "n": len(idle_pred)},
            "training": {"p50": pct(busy_pred, 50), "p95": pct(busy_pred, 95), "n": len(busy_pred)},
        },
    }
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()

"""Login throttling: backoff per client on the middleware alone (a fake clock), then on the real app's /login."""

import asyncio
import math
import time

from ftui.ui.login_throttle import LoginThrottle


class FakeLogin:
    """Answers /login like Gradio: 200 for the right password, 400 otherwise; counts the checks it made."""

    def __init__(self) -> None:
        self.checked = 0

    async def __call__(self, scope, receive, send) -> None:
        self.checked += 1
        body = (await receive())["body"]
        ok = b"password=right" in body
        await send({"type": "http.response.start", "status": 200 if ok else 400, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def attempt(app: LoginThrottle, password: str, client: str = "10.0.0.1") -> tuple[int, dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": f"username=ann&password={password}".encode(), "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/login", "headers": [], "client": (client, 5000)}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], dict(start.get("headers", []))


def test_backoff_doubles_per_failure_and_success_clears_it():
    now = [0.0]
    inner = FakeLogin()
    app = LoginThrottle(inner, clock=lambda: now[0], free_attempts=3, base_delay_s=2.0, max_delay_s=60.0)
    assert [attempt(app, "wrong")[0] for _ in range(3)] == [400, 400, 400]
    assert app.wait_s("10.0.0.1") == 2.0  # the third failure starts the first wait
    status, headers = attempt(app, "right")
    assert status == 429 and headers[b"retry-after"] == b"2" and inner.checked == 3  # not even checked
    assert attempt(app, "wrong", client="10.0.0.2")[0] == 400  # another client is not slowed down
    now[0] += 2.0
    assert attempt(app, "wrong")[0] == 400 and app.wait_s("10.0.0.1") == 4.0  # doubled
    now[0] += 4.0
    assert attempt(app, "wrong")[0] == 400 and app.wait_s("10.0.0.1") == 8.0
    for _ in range(10):
        now[0] += 1000
        assert attempt(app, "wrong")[0] == 400
    assert app.wait_s("10.0.0.1") == 60.0  # 2 * 2**12 seconds, capped at max_delay_s
    now[0] += 60
    assert attempt(app, "right")[0] == 200 and app.wait_s("10.0.0.1") == 0.0  # success forgets the failures
    assert attempt(app, "wrong")[0] == 400 and app.wait_s("10.0.0.1") == 0.0  # a fresh allowance


def test_parallel_guesses_get_only_the_allowance():
    """200 guesses sent at once: the checks are reserved atomically, so only the free attempts reach the password."""
    now = [0.0]
    release = asyncio.Event()

    class SlowLogin(FakeLogin):
        entered = 0

        async def __call__(self, scope, receive, send) -> None:
            SlowLogin.entered += 1
            await release.wait()  # every admitted check is still in flight when the others arrive
            await super().__call__(scope, receive, send)

    inner = SlowLogin()
    app = LoginThrottle(inner, clock=lambda: now[0], free_attempts=3, base_delay_s=2.0)

    async def one() -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"username=ann&password=wrong", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/login", "headers": [], "client": ("10.0.0.9", 1)}
        await app(scope, receive, send)
        return sent[0]["status"]

    async def storm() -> list[int]:
        tasks = [asyncio.create_task(one()) for _ in range(200)]
        for _ in range(10_000):  # until each guess is either answered or waiting inside the password check
            if sum(t.done() for t in tasks) + SlowLogin.entered == len(tasks):
                break
            await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*tasks)

    codes = asyncio.run(storm())
    assert codes.count(400) == 3 and codes.count(429) == 197 and inner.checked == 3
    assert app.wait_s("10.0.0.9") == 2.0  # the three failures then start the first wait


def test_a_failing_check_releases_its_reservation():
    class Broken:
        async def __call__(self, scope, receive, send) -> None:
            raise RuntimeError("backend down")

    app = LoginThrottle(Broken(), clock=lambda: 0.0, free_attempts=1)
    for _ in range(3):  # were the reservation kept, the second try would be refused as "already in flight"
        try:
            attempt(app, "x")
        except RuntimeError:
            pass
    assert app._clients["10.0.0.1"].pending == 0 and app._clients["10.0.0.1"].failures == 0


def test_other_routes_pass_untouched():
    inner = FakeLogin()
    app = LoginThrottle(inner, free_attempts=0)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    for _ in range(5):
        asyncio.run(app({"type": "http", "method": "GET", "path": "/config", "client": ("1.2.3.4", 1)}, receive, send))
    assert inner.checked == 5 and app.wait_s("1.2.3.4") == 0.0


def test_the_app_slows_down_password_guessing(tmp_path):
    """1,000 wrong passwords against the real app: only the first few reach the password check."""
    import httpx

    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.settings import Settings
    from ftui.ui import create_app, launch_kwargs
    from ftui.ui.login_throttle import FREE_ATTEMPTS

    settings = Settings(auth=(("ann", "s3cret"),))
    app = create_app(Engine(tmp_path, HubStatus(False, "offline"), settings))
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs(settings))
    try:
        url = app.local_url.rstrip("/")
        codes: dict[int, int] = {}
        t0 = time.perf_counter()
        with httpx.Client() as c:
            for i in range(1000):
                r = c.post(f"{url}/login", data={"username": "ann", "password": f"guess{i}"})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
            locked = c.post(f"{url}/login", data={"username": "ann", "password": "s3cret"})
        elapsed = time.perf_counter() - t0
        # The first wait is 1 s and doubles, so within `elapsed` seconds at most log2(elapsed + 1) + 1 more checks
        # can happen once the waits expire (the loop takes about a second on a slow machine).
        extra = math.floor(math.log2(elapsed + 1)) + 1
        assert codes.get(400, 0) >= FREE_ATTEMPTS and set(codes) == {400, 429}, (codes, elapsed)
        assert codes[400] <= FREE_ATTEMPTS + extra, (codes, elapsed)
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1  # even the right one must wait
    finally:
        app.close()

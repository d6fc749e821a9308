"""Sign-in on a Space, in Chromium: two Hugging Face users (Gradio's local OAuth mock) each see only their own runs, an
anonymous visitor only the showcase runs, and a raw API call by one user against another's run is refused.

The app runs as a Space would: its own process (`FTUI_OAUTH=1`, `FTUI_ADMINS`), a fake Hub answering `whoami` for the
mocked login (Gradio asks it once, at start-up, for the user its Sign-in button logs in). The second user's and the
admin's sessions are cookies signed with the app's session secret, as Gradio's own callback would set them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from helpers import FakeHub

pytestmark = pytest.mark.slow  # a second app process and a browser: about a minute

SECRET = "ftui-test-oauth-secret"  # OAUTH_CLIENT_SECRET: Gradio signs its session cookies with a hash of it
SCRIPT = """
import sys
from ftui.ui import create_app, launch_kwargs
create_app().queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True, **launch_kwargs())
"""


def session_cookie(user: str) -> str:
    """A Gradio OAuth session for `user`, signed as starlette's SessionMiddleware signs it."""
    import itsdangerous

    info = {
        "access_token": f"token-{user}", "token_type": "bearer", "expires_in": 3600, "scope": "openid profile",
        "expires_at": int(time.time()) + 3600,
        "userinfo": {"preferred_username": user, "name": user.title(), "profile": f"https://huggingface.co/{user}",
                     "picture": "", "sub": user},
    }  # fmt: skip
    secret = hashlib.sha256(f"{SECRET}-v4".encode()).hexdigest()
    data = base64.b64encode(json.dumps({"oauth_info": info}).encode())
    return itsdangerous.TimestampSigner(secret).sign(data).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory):
    """Runs of alice and bob in a runs folder, and the app serving it with sign-in on; yields (url, run ids)."""
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.settings import Settings

    runs_dir = tmp_path_factory.mktemp("space") / "runs"
    eng = Engine(runs_dir=runs_dir, hub_status=HubStatus(False, "offline (tests)"), settings=Settings(oauth=True))
    ids = {}
    for user in ("alice", "bob"):
        cfg = RunConfig(DataConfig(), ModelConfig(), TrainConfig(run_name=f"{user}-run"), kind="baseline", baseline="tfidf")
        run = eng.start_run(replace(cfg), viewer=eng.viewer(user))
        assert run.done.wait(120) and eng.join(30) and run.status.value == "completed", run.error
        ids[user] = run.run_id
    del eng

    hub = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("FTUI_OFFLINE", "HF_HUB_OFFLINE", "SPACE_ID")}
    env.update(FTUI_OAUTH="1", FTUI_ADMINS="carol", FTUI_RUNS_DIR=str(runs_dir), HF_TOKEN="hf_test",
               HF_ENDPOINT=f"http://127.0.0.1:{hub.server_address[1]}", OAUTH_CLIENT_SECRET=SECRET,
               TOKENIZERS_PARALLELISM="false", GRADIO_ANALYTICS_ENABLED="False")  # fmt: skip
    log = runs_dir.parent / "app.log"
    with open(log, "w") as out:
        app = subprocess.Popen([sys.executable, "-c", SCRIPT, str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                               cwd=Path(__file__).parent.parent)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:  # the app is up once it answers (engine, models, then the server)
        assert app.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)  # polling a server that is starting, not synchronising with it
    yield url, ids
    app.terminate()
    app.wait(30)
    hub.shutdown()


def page_as(browser, url: str, user: str | None):
    """A browser context signed in as `user` (by cookie), or anonymous."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    if user:
        ctx.add_cookies([{"name": "session", "value": session_cookie(user), "url": url}])
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    return ctx, page


def runs_table_text(page, count: int) -> str:
    """The Runs table once the page's refresh for this viewer has landed (its scope line counts `count` runs)."""
    page.get_by_role("tab", name="6. Runs").click()
    page.wait_for_selector(f"#runs-scope:has-text('Showing {count} run')")
    return page.locator("#runs-table").inner_text()


def api(url: str, user: str | None):
    from gradio_client import Client

    headers = {"Cookie": f"session={session_cookie(user)}"} if user else {}
    return Client(url, headers=headers, verbose=False)


def test_the_sign_in_button_logs_in_through_gradios_mock_and_shows_only_alices_runs(browser, space):
    url, _ = space
    ctx, page = page_as(browser, url, None)
    page.locator("#login").click()  # Gradio's mock: /login/huggingface → callback → back, signed in as whoami's user
    page.wait_for_selector("#login:has-text('alice')")
    text = runs_table_text(page, 1)
    assert "signed in as alice" in page.locator("#runs-scope").inner_text()
    assert "alice-run" in text and "bob-run" not in text
    ctx.close()


def test_each_user_sees_only_their_own_runs_and_anonymous_none(browser, space):
    url, _ = space
    seen = {}
    for user, count in (("alice", 1), ("bob", 1), (None, 0), ("carol", 2)):
        ctx, page = page_as(browser, url, user)
        seen[user] = runs_table_text(page, count)
        ctx.close()
    assert "alice-run" in seen["alice"] and "bob-run" not in seen["alice"]
    assert "bob-run" in seen["bob"] and "alice-run" not in seen["bob"]
    assert "alice-run" not in seen[None] and "bob-run" not in seen[None]
    assert "alice-run" in seen["carol"] and "bob-run" in seen["carol"]  # the admin sees every run


def test_a_raw_api_call_against_another_users_run_is_refused(space):
    url, ids = space
    message = api(url, "bob").predict(ids["alice"], "bob was here", "", "", "all", [], api_name="/update_run")[0]
    assert "not one you can see" in message
    summary = api(url, "alice").predict(ids["alice"], api_name="/evaluate_run")[0]
    assert "alice-run" in summary and "bob was here" not in summary  # unchanged
    refused = api(url, None).predict(ids["alice"], True, api_name="/export_onnx")
    assert "not one you can see" in refused


def test_an_admins_showcase_run_is_what_an_anonymous_visitor_sees(browser, space):
    url, ids = space
    assert "Only an admin" in api(url, "bob").predict(ids["bob"], api_name="/showcase_run")
    assert "now shown to every visitor" in api(url, "carol").predict(ids["alice"], api_name="/showcase_run")
    ctx, page = page_as(browser, url, None)
    text = runs_table_text(page, 1)
    assert "alice-run" in text and "bob-run" not in text
    page.get_by_role("tab", name="5. Predict").click()
    page.click("#predict-model input")
    options = page.locator("ul[role=listbox] li").all_inner_texts()
    assert any("alice-run" in o for o in options) and not any("bob-run" in o for o in options)
    page.keyboard.press("Escape")
    page.fill("#predict-text textarea", "A warm, funny and moving film.")
    page.click("#predict-btn")
    page.wait_for_selector("#predict-label:has-text('positive')")  # the showcase model answers an anonymous visitor
    ctx.close()


def test_the_sign_in_header_leaves_the_main_path_on_a_1024_screen(browser, space, tmp_path):
    """Signed in at 1024x768: the button names the user, and the tabs sit on the first screen under the header."""
    url, _ = space
    ctx = browser.new_context(viewport={"width": 1024, "height": 768})
    ctx.add_cookies([{"name": "session", "value": session_cookie("alice"), "url": url}])
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#login:has-text('alice')")
    login, train = page.locator("#login").bounding_box(), page.get_by_role("tab", name="4. Train").bounding_box()
    assert login["x"] + login["width"] <= 1024 and train["y"] + train["height"] < 300, (login, train)
    page.screenshot(path=str(os.environ.get("FTUI_SIGNIN_SHOT") or tmp_path / "signin-1024.png"))
    ctx.close()

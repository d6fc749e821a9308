"""The Space's front matter (README.md) matches what the repository ships and what ftui supports (issue 24, point 4)."""

from __future__ import annotations

import re

import yaml
from helpers import REPO


def _front_matter() -> dict:
    text = (REPO / "README.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md starts with the Space's YAML front matter"
    return yaml.safe_load(match.group(1))


def test_the_front_matter_names_what_the_repository_ships():
    front = _front_matter()
    pins = {re.sub(r"\[.*\]", "", name): version  # gradio[oauth] pins gradio
            for name, version in (line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                                  if "==" in line and not line.startswith("#"))}  # fmt: skip
    assert front["sdk"] == "gradio" and front["sdk_version"] == pins["gradio"]  # the Space runs the tested Gradio
    assert (REPO / front["app_file"]).is_file()
    assert front["python_version"] == "3.11"  # the Python the suite runs on (torch==2.13.0 ships wheels for it)
    assert front["suggested_hardware"] in ("cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "a10g-small", "zero-a10g")
    assert re.fullmatch(r"\d+[mh]", str(front["startup_duration_timeout"]))  # installing torch takes minutes
    assert "spaces" in pins  # ZeroGPU's decorator, a no-op elsewhere


def test_sign_in_is_on_with_the_fewest_scopes():
    """hf_oauth: each visitor signs in for their own workspace (OAUTH_CLIENT_ID turns it on); ftui needs only who
    they are (openid profile, the default), never a token to act for them (Hub pushes take a token typed for that push)."""
    front = _front_matter()
    assert front["hf_oauth"] is True
    assert "hf_oauth_scopes" not in front
    assert "gradio[oauth]" in (REPO / "requirements.txt").read_text()  # the login routes need authlib and itsdangerous

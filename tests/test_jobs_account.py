"""Who pays for a Jobs run (ftui/jobs_account.py): whoami's answer read into a token's Jobs permission and the account's
payment method, each refusal a message before anything is spent, and the Hub's refusals at submission in words."""

from __future__ import annotations

from typing import Any

import pytest

from ftui.errors import FtuiError
from ftui.jobs_account import Payer, payer_of, require_payer, submission_refused


def _who(auth: dict[str, Any], can_pay: Any = True) -> dict[str, Any]:
    return {"name": "alice", "type": "user", "canPay": can_pay, "auth": auth}


def _token(role: str, **extra: Any) -> dict[str, Any]:
    return {"type": "access_token", "accessToken": {"displayName": "t", "role": role, **extra}}


def _fine(global_: list[str], mine: list[str], others: list[str] | None = None) -> dict[str, Any]:
    scoped = [{"entity": {"type": "user", "name": "alice"}, "permissions": mine}]
    if others is not None:
        scoped.append({"entity": {"type": "org", "name": "acme"}, "permissions": others})
    return _token("fineGrained", fineGrained={"global": global_, "scoped": scoped})


@pytest.mark.parametrize(
    ("auth", "can_start"),
    [
        (_token("write"), True),
        (_token("read"), False),
        (_fine([], ["repo.content.read", "job.write"]), True),
        (_fine(["job.write"], []), True),
        (_fine(["inference.serverless.write"], ["repo.write"], others=["job.write"]), False),  # jobs only in an org
        ({"type": "oauth", "scope": "openid profile jobs"}, True),
        ({"type": "oauth", "scope": "openid profile inference-api"}, False),
        ({"type": "oauth"}, None),  # whoami does not list the scopes: the Hub decides at submission
        ({}, None),
    ],
)
def test_the_tokens_jobs_permission_is_read_from_whoami(auth: dict[str, Any], can_start: bool | None) -> None:
    assert payer_of(_who(auth)).can_start_jobs is can_start


def test_a_token_that_cannot_start_jobs_is_refused_with_what_to_do() -> None:
    with pytest.raises(FtuiError, match="read-only token") as read:
        require_payer(payer_of(_who(_token("read"))))
    assert "write token" in read.value.fix
    with pytest.raises(FtuiError, match="without 'job.write'"):
        require_payer(payer_of(_who(_fine([], ["repo.write"]))))
    with pytest.raises(FtuiError, match="'jobs' scope is missing") as oauth:
        require_payer(payer_of(_who({"type": "oauth", "scope": ["openid", "profile"]})))
    assert "hf_oauth_scopes" in oauth.value.fix


def test_an_account_without_a_payment_method_is_refused_and_an_unknown_one_passes() -> None:
    with pytest.raises(FtuiError, match="no payment method") as refused:
        require_payer(payer_of(_who(_token("write"), can_pay=False)))
    assert "settings/billing" in refused.value.fix
    require_payer(payer_of(_who(_token("write"), can_pay=None)))  # not said: the Hub decides
    require_payer(Payer("alice", "write", True, True))


class _Refusal(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.response = type("R", (), {"status_code": code})()


@pytest.mark.parametrize(
    ("code", "text", "said"),
    [
        (402, "Payment required", "no payment method or credits"),
        (403, "Forbidden", "may not start Jobs there"),
        (400, "Invalid flavor 'b9000'", "does not offer the flavor 'b9000'"),
        (500, "Server error", "Jobs refused the run (HTTP 500): Server error"),
    ],
)
def test_the_hubs_refusal_at_submission_is_a_message(code: int, text: str, said: str) -> None:
    assert said in submission_refused(_Refusal(code, text), "alice", "b9000").problem

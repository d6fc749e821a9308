"""Who pays for a Hugging Face Jobs run: the token's account, its jobs permission and payment method, read from whoami
before anything is staged or submitted, and the Hub's own refusals at submission in words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftui.errors import FtuiError

TOKENS_PAGE = "huggingface.co/settings/tokens"
BILLING_PAGE = "huggingface.co/settings/billing"
JOB_PERMISSION = "job.write"  # a fine-grained token's permission to start and manage Jobs
OAUTH_SCOPE = "jobs"  # a Space's sign-in scope for Jobs (hf_oauth_scopes in the Space's README)


@dataclass(frozen=True)
class Payer:
    """The account a token bills, as whoami describes it."""

    name: str = field(metadata={"help": "the account (the job's namespace)"})
    token_kind: str = field(metadata={"help": "'write', 'read', 'fineGrained', 'oauth' or '' when whoami does not say"})
    can_start_jobs: bool | None = field(metadata={"help": "the token may start Jobs; None when whoami does not tell"})
    can_pay: bool | None = field(metadata={"help": "a payment method is on file (whoami's canPay); None when not said"})


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.replace(",", " ").split()
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def _fine_grained(grants: dict[str, Any], user: str) -> bool:
    """A fine-grained token's permissions on the user's own namespace (or global) include starting Jobs."""
    granted = set(_as_list(grants.get("global")))
    for scoped in [s for s in grants.get("scoped") or [] if isinstance(s, dict)]:
        entity = scoped.get("entity") if isinstance(scoped.get("entity"), dict) else {}
        if entity.get("type") == "user" and entity.get("name") == user:
            granted |= set(_as_list(scoped.get("permissions")))
    return JOB_PERMISSION in granted


def payer_of(who: dict[str, Any]) -> Payer:
    """Read whoami-v2's answer; what it does not say stays None (the Hub then decides at submission)."""
    name = str(who.get("name") or "")
    auth = who.get("auth") if isinstance(who.get("auth"), dict) else {}
    token = auth.get("accessToken") if isinstance(auth.get("accessToken"), dict) else {}
    can_start: bool | None = None
    kind = str(token.get("role") or "") if auth.get("type") == "access_token" else str(auth.get("type") or "")
    if kind == "read":
        can_start = False  # a read token starts nothing
    elif kind == "write":
        can_start = True
    elif kind == "fineGrained":
        can_start = _fine_grained(token.get("fineGrained") or {}, name)
    elif kind == "oauth":  # the granted scopes, when whoami lists them
        scopes = _as_list(auth.get("scope") or auth.get("scopes") or token.get("scope") or token.get("scopes"))
        can_start = (OAUTH_SCOPE in scopes) if scopes else None
    pay = who.get("canPay")
    return Payer(name=name, token_kind=kind, can_start_jobs=can_start, can_pay=pay if isinstance(pay, bool) else None)


def require_payer(payer: Payer) -> None:
    """Refuse, before anything is spent, a token that cannot start Jobs or an account that cannot pay for them."""
    if payer.can_start_jobs is False:
        if payer.token_kind == "oauth":
            raise FtuiError(
                f"Your sign-in does not allow this app to start Jobs for {payer.name} (the '{OAUTH_SCOPE}' scope is missing).",
                f"Paste a token with the Jobs permission instead; the app's operator can add '{OAUTH_SCOPE}' to "
                "hf_oauth_scopes in the Space's README.",
            )
        what = "a read-only token" if payer.token_kind == "read" else f"a fine-grained token without '{JOB_PERMISSION}'"
        raise FtuiError(
            f"The token for {payer.name} cannot start Jobs: it is {what}.",
            f"Use a write token, or add 'Start and manage Jobs' ({JOB_PERMISSION}) to the token at {TOKENS_PAGE}.",
        )
    if payer.can_pay is False:
        raise FtuiError(
            f"The account {payer.name} has no payment method on file, and Jobs are billed per minute.",
            f"Add one at {BILLING_PAGE}, then start again.",
        )


def submission_refused(exc: Exception, namespace: str, flavor: str) -> FtuiError:
    """The Hub's refusal of run_job in words (nothing ran, nothing is billed)."""
    code = getattr(getattr(exc, "response", None), "status_code", None)
    detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if code == 402:
        return FtuiError(f"Jobs refused the run: {namespace} has no payment method or credits (HTTP 402).",
                         f"Add a payment method at {BILLING_PAGE}.")  # fmt: skip
    if code in (401, 403):
        return FtuiError(f"Jobs refused the run for {namespace} (HTTP {code}): the token may not start Jobs there.",
                         f"Use a token with the Jobs permission ({JOB_PERMISSION}) at {TOKENS_PAGE}.")  # fmt: skip
    if code in (400, 404, 422) and flavor in detail:
        return FtuiError(f"Jobs does not offer the flavor {flavor!r} now ({detail}).", "Pick another flavor.")
    return FtuiError(f"Jobs refused the run (HTTP {code}): {detail}", "Check the message above, then start again.")

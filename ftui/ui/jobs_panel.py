"""Where to run, for the Train and Sweeps tabs: this machine or Hugging Face Jobs (hardware with its price, the time cap,
the estimated cost and who pays), and the followed job's stage, curves and Stop in the Train tab."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from ftui import jobs
from ftui.engine import Engine
from ftui.engine_jobs import JobView
from ftui.errors import FtuiError
from ftui.escaping import code_block_md, code_md, escape_md
from ftui.icons import ERR, OK, WAIT, WARN
from ftui.jobs_account import OAUTH_SCOPE, Payer, require_payer
from ftui.plots import accuracy_figure, loss_figure, status_markdown
from ftui.ui.common import as_float, error_md, token_of, viewer_of

HERE = "On this machine"
JOBS = "On Hugging Face Jobs"
DEFAULT_MINUTES = 30.0
PREFERRED = ("t4-small", "a10g-small", "l4x1")  # the first offered is the default: the cheapest GPUs that fine-tune well
_URL = re.compile(r"https?://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+")
STAGE_WORDS = {
    "SCHEDULING": "queued: waiting for the hardware",
    "COMPLETED": "completed",
    "ERROR": "error",
    "CANCELED": "cancelled",
    "DELETED": "deleted",
}


def flavor_choices(hardware: jobs.HardwareList) -> list[tuple[str, str]]:
    """(label with the price per hour, flavor name) for the dropdown, in the Hub's order."""
    return [(f"{f.name} — ${f.usd_per_hour:,.2f}/h", f.name) for f in hardware.flavors]


def default_flavor(hardware: jobs.HardwareList) -> str | None:
    """A small GPU when offered, else the first flavor."""
    names = [f.name for f in hardware.flavors]
    return next((n for n in PREFERRED if n in names), names[0] if names else None)


def prices_line(hardware: jobs.HardwareList) -> str:
    """Where the prices came from: the live list, or the shipped table with its date (and why)."""
    if hardware.source == "list_jobs_hardware":
        return "Prices: live from Hugging Face (list_jobs_hardware)."
    return f"Prices: ftui's shipped {escape_md(hardware.source)}, not live; check huggingface.co/pricing."


def estimate_text(
    hardware: jobs.HardwareList, flavor: str | None, minutes: Any, payer: str, problem: str = "", per_run: bool = False
) -> str:
    """What the page says before Start: the most the job can cost, and who pays (or what is missing)."""
    if problem:
        return f"{WARN} {escape_md(problem)}"
    chosen = hardware.get(flavor or "")
    lines = []
    if chosen is None:
        lines.append(f"{WARN} Pick the hardware.")
    elif not isinstance(minutes, (int, float)) or minutes <= 0:
        lines.append(f"{WARN} A Jobs run needs a time cap in minutes: it is billed per minute.")
    elif per_run:  # one job for the sweep: the start-up once, then each run up to its cap
        price, startup = chosen.usd_per_hour, chosen.usd_per_hour * jobs.STARTUP_MINUTES / 60
        lines.append(f"**Up to ${price * minutes / 60:,.2f} per run** of the sweep ({escape_md(chosen.name)} at "
                     f"${price:,.2f}/h × your {minutes:g}-minute cap), **plus ${startup:,.2f} once** for the job's "
                     f"{jobs.STARTUP_MINUTES} minutes of start-up and test passes.")  # fmt: skip
    else:
        total = minutes + jobs.STARTUP_MINUTES
        cost = chosen.usd_per_hour * total / 60
        lines.append(f"**Up to ${cost:,.2f}** for this run: {escape_md(chosen.name)} at ${chosen.usd_per_hour:,.2f}/h × "
                     f"{total:g} min (your {minutes:g}-minute cap + {jobs.STARTUP_MINUTES} for start-up and the test "
                     "pass).")  # fmt: skip
    lines.append(prices_line(hardware))
    lines.append(f"**Pays:** {payer}" if payer else f"{WARN} **Pays:** nobody yet: paste a token with the Jobs "
                 "permission (Hub token, top right) or sign in.")  # fmt: skip
    return " ".join(lines)


def payer_words(engine: Engine, token: str | None, source: str) -> tuple[str, str]:
    """(who pays, in words; why they cannot) for a token, from whoami (cached by the engine)."""
    if not token:
        return "", ""
    try:
        payer = engine.job_payer(token)
        require_payer(payer)
    except FtuiError as exc:
        return "", f"{exc.problem} {exc.fix}".strip()
    return f"{escape_md(payer.name)} ({escape_md(source)})", ""


def sign_in_refusal(oauth: gr.OAuthToken | None) -> str:
    """Why a sign-in's token cannot start Jobs ('' when it can, or when there is none): the scopes the visitor granted
    come with the token, so no call is needed."""
    scopes = str(getattr(oauth, "scope", "") or "").replace(",", " ").split()
    if oauth is None or not scopes or OAUTH_SCOPE in scopes:
        return ""
    try:
        require_payer(Payer(name="your account", token_kind="oauth", can_start_jobs=False, can_pay=None))
    except FtuiError as exc:
        return f"{exc.problem} {exc.fix}".strip()
    return ""


def job_line(view: JobView) -> str:
    """The followed job in one line: where, which job, its stage now, what it may cost and who pays."""
    note = view.note
    link = f" ([job page]({note.url}))" if _URL.fullmatch(note.url or "") else ""
    if view.stage == "RUNNING":
        stage = "running" if view.run is not None else "starting: installing, loading the data and the model"
    elif view.stage == "unknown":
        stage = "stage unknown (paste the token of the account it runs under, or sign in, so the app can ask Jobs)"
    else:
        stage = STAGE_WORDS.get(view.stage, view.stage.lower())
    mark = {"COMPLETED": OK, "ERROR": ERR}.get(view.stage, WAIT)
    line = (f"{mark} **Hugging Face Jobs** · {escape_md(note.flavor)} · job {code_md(note.job_id)}{link} · **{stage}** · "
            f"up to ${note.estimated_cost_usd:,.2f}, billed to {escape_md(note.namespace)}")  # fmt: skip
    if view.stage in ("ERROR", "CANCELED", "DELETED"):
        line += f"\n\n{escape_md(jobs.ending(view.stage, view.message))}"
    if view.logs:
        line += "\n\nThe end of the job's logs:\n\n" + code_block_md("\n".join(view.logs))
    return line


@dataclass
class Place:
    """The "Where to run" widgets of one tab, and the wrappers that route Start, Stop and the timer to a job."""

    engine: Engine
    token_box: gr.Textbox
    where: gr.Radio | gr.Dropdown
    flavor: gr.Dropdown
    minutes: gr.Number
    estimate: gr.Markdown
    per_run: bool

    @property
    def inputs(self) -> list[Any]:
        """The widgets a Start handler reads (with the token box)."""
        return [self.where, self.flavor, self.minutes]

    def chosen(self, values: dict[Any, Any]) -> bool:
        """Whether Start goes to Jobs."""
        return values.get(self.where) == JOBS

    def _payer(self, values: dict[Any, Any], oauth: gr.OAuthToken | None) -> tuple[str | None, str]:
        return self.engine.paying_token(token_of(values.get(self.token_box)), oauth.token if oauth is not None else None)

    def _checked(self, values: dict[Any, Any], oauth: gr.OAuthToken | None) -> tuple[jobs.JobTarget, float, str | None]:
        """The bucket, the page's time cap and the paying token, or the FtuiError that says what is missing."""
        target = self.engine.jobs_target()
        problem = self.engine.jobs_problem()
        if target is None or problem:
            raise FtuiError(problem or "Jobs are not set up on this app.", "")
        minutes = as_float(values.get(self.minutes), 0.0)
        if not isinstance(minutes, float) or minutes <= 0:
            raise FtuiError("A Jobs run needs a time cap: it is billed per minute.", "Set the time cap in minutes.")
        token, _ = self._payer(values, oauth)
        refused = sign_in_refusal(oauth) if oauth is not None and token == oauth.token else ""
        if refused:
            raise FtuiError(refused, "")
        return target, minutes, token

    def submit(
        self, values: dict[Any, Any], cfg: Any, profile: gr.OAuthProfile | None, oauth: gr.OAuthToken | None, sweep: Any = None
    ) -> str:
        """Submit the job for `cfg` (and `sweep`) with the page's time cap; the message for the page."""
        try:
            target, minutes, token = self._checked(values, oauth)
        except FtuiError as exc:
            return error_md(exc)
        if sweep is not None:
            sweep = replace(sweep, max_minutes=minutes)
        else:
            cfg = replace(cfg, train=replace(cfg.train, max_minutes=minutes))
        try:
            note = self.engine.submit_job(cfg, str(values.get(self.flavor) or ""), target, token,
                                          viewer_of(self.engine, profile), sweep)  # fmt: skip
        except FtuiError as exc:
            return error_md(exc)
        what = f"sweep {code_md(note.sweep_id)}" if note.sweep_id else f"run **{escape_md(note.run_name)}**"
        return (f"{OK} Submitted job {code_md(note.job_id)} for {what} on {escape_md(note.flavor)}: up to "
                f"${note.estimated_cost_usd:,.2f}, billed to {escape_md(note.namespace)}. It starts when Jobs has the "
                "hardware; the curves appear here when it trains.")  # fmt: skip

    def estimate_of(
        self, where: str, flavor: str | None, minutes: Any, token: str | None, oauth: gr.OAuthToken | None = None
    ) -> str:
        """The estimate line for the widgets' values ('' on this machine)."""
        if where != JOBS:
            return ""
        problem = self.engine.jobs_problem()
        paying, source = self.engine.paying_token(token_of(token), oauth.token if oauth is not None else None)
        payer, refused = payer_words(self.engine, paying, source) if not problem else ("", "")
        if oauth is not None and paying == oauth.token and sign_in_refusal(oauth):
            payer, refused = "", sign_in_refusal(oauth)
        hardware = self.engine.jobs_hardware(paying)
        text = estimate_text(hardware, flavor, as_float(minutes, 0.0), payer, problem, self.per_run)
        return text + (f"\n\n{WARN} {escape_md(refused)}" if refused else "")

    # ------------------------------------------------------------------------------ the Train tab's wrappers
    def render(self, inner: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
        """The Train tab's timer: the viewer's job and its run while they follow one, else the tab's own render.
        Outputs: [status, loss_plot, acc_plot, version, timer, start, baselines]."""
        engine = self.engine

        def render(last_version: str, profile: gr.OAuthProfile | None = None, oauth: gr.OAuthToken | None = None) -> Any:
            view = engine.followed_job(viewer_of(engine, profile), oauth.token if oauth is not None else None)
            if view is None:
                return inner(last_version, profile)
            line, run, skip = job_line(view), view.run, gr.skip()
            if run is None:
                version = f"job:{view.note.job_id}:{view.stage}"
                return line, skip, skip, version, gr.Timer(active=not view.ended), skip, skip
            now = run.snapshot(events=False)
            version = f"{run.run_id}#{now.version}@{view.stage}"
            polling = gr.Timer(active=not (now.status.finished and (view.ended or view.stage == "unknown")))
            status = f"{line}\n\n{status_markdown(now, now=time.time())}"
            if version == last_version:
                return (skip if now.status.finished else status), skip, skip, version, polling, skip, skip
            snap = run.snapshot()
            return (
                status,
                loss_figure(snap.events, run.run_id),
                accuracy_figure(snap.events, run.run_id),
                version,
                polling,
                skip,
                skip,
            )

        return render

    def stop(self, inner: Callable[..., str]) -> Callable[..., str]:
        """The Train tab's Stop: a followed job's run stops with a snapshot and the job is cancelled; else as before."""
        engine = self.engine

        def on_stop(token: str | None, profile: gr.OAuthProfile | None = None, oauth: gr.OAuthToken | None = None) -> str:
            viewer = viewer_of(engine, profile)
            signed_in = oauth.token if oauth is not None else None
            view = engine.followed_job(viewer, signed_in)
            if view is None or (view.ended and (view.run is None or view.run.status.finished)):
                return inner(profile)
            try:
                what = engine.stop_job(view, engine.paying_token(token_of(token), signed_in)[0], viewer)
            except FtuiError as exc:
                return error_md(exc)
            if what == "cancelled":
                return f"Cancelled job {code_md(view.note.job_id)}."
            return (f"Stopping **{escape_md(view.run.name if view.run else '')}** at its next step: it keeps a snapshot "
                    f"to resume from, then job {code_md(view.note.job_id)} is cancelled.")  # fmt: skip

        return on_stop

    def start(
        self,
        inner: Callable[..., tuple[Any, ...]],
        config_of: Callable[[dict[Any, Any]], Any],
        width: int,
        timer_at: int,
        sweep_of: Callable[[dict[Any, Any]], Any] | None = None,
    ) -> Callable[..., tuple[Any, ...]]:
        """A tab's Start: to Jobs when chosen (its `width` outputs: the message first, the Train tab's timer turned on
        at `timer_at` so it follows the job), else the tab's own Start. `sweep_of`: the Sweeps tab's sweep."""

        def on_start(values: dict[Any, Any], profile: gr.OAuthProfile | None = None,
                     oauth: gr.OAuthToken | None = None) -> tuple[Any, ...]:  # fmt: skip
            if not self.chosen(values):
                return inner(values, profile)
            text = self.submit(values, config_of(values), profile, oauth, sweep_of(values) if sweep_of else None)
            out: list[Any] = [text, *[gr.skip()] * (width - 1)]
            out[timer_at] = gr.Timer(active=True)
            return tuple(out)

        return on_start

    def resume(self, pick: Any, inner: Callable[..., str]) -> Callable[..., str]:
        """The Runs tab's Resume: on Jobs when chosen (the job continues the run from its snapshot on the bucket, with
        the page's time cap and the same checks and payer as a new Jobs run), else the tab's own Resume."""

        def on_resume(values: dict[Any, Any], profile: gr.OAuthProfile | None = None,
                      oauth: gr.OAuthToken | None = None) -> str:  # fmt: skip
            run_id = values.get(pick)
            if not self.chosen(values) or not run_id:
                return inner(run_id, values.get(self.token_box), profile)
            try:
                target, minutes, token = self._checked(values, oauth)
                note = self.engine.resume_on_job(str(run_id), str(values.get(self.flavor) or ""), target, token,
                                                 viewer_of(self.engine, profile), minutes)  # fmt: skip
            except FtuiError as exc:
                return error_md(exc)
            return (f"{OK} Submitted job {code_md(note.job_id)} to resume it on {escape_md(note.flavor)}: up to "
                    f"${note.estimated_cost_usd:,.2f}, billed to {escape_md(note.namespace)}. Follow it in the Train "
                    "tab.")  # fmt: skip

        return on_resume


def where_choice(prefix: str) -> gr.Dropdown:
    """The choice as one line, for a tab's row of buttons: no label box, so the Train tab's curves stay on a 1024x768
    screen (the hardware, time cap and estimate appear under the row when Jobs is chosen)."""
    return gr.Dropdown([HERE, JOBS], value=HERE, label="Where to run", show_label=False, container=False,
                       elem_id=f"{prefix}-where", scale=2, min_width=240)  # fmt: skip


def build(engine: Engine, token_box: gr.Textbox, prefix: str, where: Any = None, per_run: bool = False) -> Place:
    """Lay out "Where to run": `where` (from where_choice) or a radio row of its own, then the hardware and time cap
    and the estimate, shown when Jobs is chosen."""
    hardware = engine.jobs_hardware(None)
    if where is None:
        where = gr.Radio([HERE, JOBS], value=HERE, label="Where to run", elem_id=f"{prefix}-where")
    with gr.Row(equal_height=True, visible=False) as details:
        flavor = gr.Dropdown(flavor_choices(hardware), value=default_flavor(hardware), label="Hardware (price per hour)",
                             elem_id=f"{prefix}-flavor", scale=3, min_width=200)  # fmt: skip
        minutes = gr.Number(DEFAULT_MINUTES, label="Cap per run (min)" if per_run else "Time cap (min)",
                            elem_id=f"{prefix}-minutes", minimum=0, scale=1, min_width=120)  # fmt: skip
    estimate = gr.Markdown("", elem_id=f"{prefix}-estimate", visible=False)
    place = Place(engine, token_box, where, flavor, minutes, estimate, per_run)

    def on_where(chosen: str, flavor_now: str | None, minutes_now: Any, token: str | None,
                 oauth: gr.OAuthToken | None = None) -> tuple[Any, ...]:  # fmt: skip
        shown = chosen == JOBS
        text = place.estimate_of(chosen, flavor_now, minutes_now, token, oauth)
        return gr.update(visible=shown), gr.update(value=text, visible=shown)

    def on_change(chosen: str, flavor_now: str | None, minutes_now: Any, token: str | None,
                  oauth: gr.OAuthToken | None = None) -> Any:  # fmt: skip
        return gr.skip() if chosen != JOBS else place.estimate_of(chosen, flavor_now, minutes_now, token, oauth)

    args = [where, flavor, minutes, token_box]
    where.change(on_where, args, [details, estimate], api_visibility="private", show_progress="hidden")
    for widget in (flavor, minutes, token_box):
        widget.change(on_change, args, estimate, api_visibility="private", show_progress="hidden")
    return place

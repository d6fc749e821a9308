"""The Gradio app: create_app builds the tabs around an Engine (injected by tests, built otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils as gradio_utils
from starlette.middleware import Middleware

from ftui.engine import Engine
from ftui.icons import WARN
from ftui.settings import Settings
from ftui.ui import adapt_tab, data_tab, lengths, model_tab, predict_tab, recommend_panel, runs_tab, sweep_tab, train_tab
from ftui.ui.common import viewer_of
from ftui.ui.login_throttle import LoginThrottle

CSS = """
#run-status { min-height: 3em; }
footer { display: none !important; }
"""
THEME = gr.themes.Soft(primary_hue="indigo")
# Gradio 6's status announcer (an aria-live region screen readers read out) says i18n("common.complete") when an
# event ends, but its English dictionary has no such key (only chatbot.complete), so the raw key was announced.
SCREEN_READER_FIXES = {"en": {"common.complete": "Done"}}


def create_app(engine: Engine | None = None) -> gr.Blocks:
    """Build the app; nothing is built at import time."""
    engine = engine or Engine(adopt_queue=True)
    # Gradio copies every file a handler returns into its cache unless it is there already: write downloads there.
    engine.serve_downloads_from(Path(gradio_utils.get_upload_folder()) / "ftui-downloads")
    # Uploaded files and generated downloads in Gradio's cache are deleted after a day (checked hourly).
    with gr.Blocks(title="ftui: fine-tune text classifiers", delete_cache=(3600, 86400)) as demo:
        # One short header: the main path of each tab must fit on a 1024x768 screen under it.
        if engine.hub.online:
            hub_line = "**Online:** " + engine.hub.message
        else:  # plain words first; the reason (never an exception name) follows
            hub_line = (
                f"**Offline:** {engine.hub.message} The bundled demo data, the packaged MiniLM checkpoint, local files "
                "and the local cache work."
            )
        with gr.Row():
            with gr.Column(scale=3):
                gr.Markdown(
                    f"## ftui — fine-tune a text classifier\n{hub_line} Device: **{engine.device_label()}**",
                    elem_id="hub-status",
                )
            if engine.sign_in:  # sign-in (hf_oauth): each user's own runs; showcase runs for everyone
                with gr.Column(scale=1, min_width=200):
                    gr.LoginButton(elem_id="login")
                    gr.Markdown(
                        "Signed in, you train and manage your own runs; everyone sees the showcase runs.",
                        elem_id="login-note",
                    )
            with gr.Column(scale=1, min_width=240), gr.Accordion("Hub token (optional)", open=False, elem_id="token-box"):
                token = gr.Textbox(label="For gated/private repos; used this session only, never saved", type="password")
        limits = engine.settings.describe()
        if limits:
            gr.Markdown(limits, elem_id="limits")
        for i, notice in enumerate(engine.notices):
            gr.Markdown(f"{WARN} {notice}", elem_id=f"notice-{i}")
        for i, notice in enumerate(engine.settings.page_notices()):  # the operator's facts, not user strings
            gr.Markdown(f"{WARN} {notice}", elem_id=f"page-notice-{i}")
        if engine.settings.demo:
            gr.Markdown(
                "**Demo mode:** this Space serves predictions from the models already trained here. "
                "To train your own, duplicate this Space (⋮ menu → Duplicate this Space) or run ftui locally.",
                elem_id="demo-notice",
            )
            with gr.Tabs():
                with gr.Tab("Predict", id="predict"):
                    predict_model, refresh_choices = predict_tab.build(engine)
            demo.load(lambda: refresh_choices(None), None, predict_model, api_visibility="private")
            return demo
        with gr.Tabs():
            with gr.Tab("1. Data", id="data"):
                data_ui = data_tab.build(engine, token)
            with gr.Tab("2. Model", id="model"):
                model_ui = model_tab.build(engine, token)
            with gr.Tab("3. Adapt", id="adapt"):
                adapt_tab.build(engine, token, model_ui)
            with gr.Tab("4. Train", id="train"):
                train_ui = train_tab.build(engine, token, data_ui, model_ui)
            with gr.Tab("5. Predict", id="predict"):
                predict_model, refresh_choices = predict_tab.build(engine)
            with gr.Tab("6. Runs", id="runs"):
                runs_ui = runs_tab.build(engine, token)
            with gr.Tab("7. Sweeps", id="sweeps"):
                sweep_tab.build(engine, token, train_ui, predict_model)

        def on_page_load(profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
            # A reload or a second browser re-attaches to the running job and its curves so far; Predict starts
            # on the default model (the newest completed run), never on what was current when the app was built.
            # With sign-in, everything here is as this browser's signed-in user sees it.
            viewer = viewer_of(engine, profile)
            return (*train_ui.render("", profile), refresh_choices(None, viewer), *train_ui.queue.render("", profile))

        demo.load(
            on_page_load,
            None,
            [*train_ui.outputs, predict_model, *train_ui.queue.outputs],
            api_visibility="private",
        )

        # Local defaults (bundled demo, packaged checkpoint) preview at once; Hub data waits for a click.
        summary = demo.load(*model_ui.autoload, api_visibility="private")
        previewed = [summary]
        if engine.default_data().source == "demo":
            previewed = [summary.then(*data_ui.autoload, api_visibility="private")]
        # The length histogram follows the data, the checkpoint (its tokenizer) and the max length.
        lengths.wire(
            engine,
            data_ui,
            model_ui,
            train_ui.max_len,
            token,
            [*previewed, *data_ui.loaded, *model_ui.loaded],
            train_ui.long_text,
        )
        # The Train tab starts on the settings the measured data calls for, and says why.
        recommend_panel.wire(engine, train_ui.recommend, data_ui, model_ui, train_ui.widgets, token,
                             [*previewed, *data_ui.loaded, *model_ui.loaded])  # fmt: skip
        for event in [*previewed, *data_ui.loaded]:  # the Train tab shows only the controls the label shape uses
            event.then(
                train_tab.shape_visibility, data_ui.task, train_ui.multi_row, api_visibility="private", show_progress="hidden"
            )

        def on_finish(profile: gr.OAuthProfile | None = None) -> Any:
            run = engine.latest_run_for(viewer_of(engine, profile))  # a followed Jobs run's too
            return refresh_choices(None, viewer_of(engine, profile)) if run is not None and run.status.finished else gr.skip()

        # When a run ends, the Predict tab offers it (as the default, when it completed) without a manual refresh.
        train_ui.version.change(on_finish, None, predict_model, api_visibility="private")

        def runs_on_finish(profile: gr.OAuthProfile | None = None) -> Any:
            run = engine.latest_run_for(viewer_of(engine, profile))
            finished = run is not None and run.status.finished
            return runs_ui.refresh(profile) if finished else (gr.skip(),) * len(runs_ui.outputs)

        demo.load(runs_ui.refresh, None, runs_ui.outputs, api_visibility="private")
        # A resumed run streams into the Train tab's charts like a fresh one.
        runs_ui.resumed.then(lambda: gr.Timer(active=True), None, train_ui.timer, api_visibility="private")
        train_ui.version.change(runs_on_finish, None, runs_ui.outputs, api_visibility="private")
    return demo


def launch_kwargs(settings: Settings | None = None) -> dict[str, Any]:
    """Options for demo.launch(): Gradio 6 takes theme and css here; FTUI_AUTH adds a login page."""
    settings = settings if settings is not None else Settings.from_env()
    kwargs: dict[str, Any] = {"theme": THEME, "css": CSS, "i18n": gr.I18n(**SCREEN_READER_FIXES)}
    if settings.auth:
        kwargs["auth"] = list(settings.auth)
        # Gradio's login has no limit on guesses: a middleware makes each client wait longer after every few failures.
        kwargs["app_kwargs"] = {"middleware": [Middleware(LoginThrottle)]}
    # Gradio refuses larger uploads before they reach the disk; ftui's readers check again (FTUI_MAX_UPLOAD_MB).
    kwargs["max_file_size"] = f"{settings.max_upload_mb:g}mb"
    return kwargs

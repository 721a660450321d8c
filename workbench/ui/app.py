"""The gradio app: a header with the slots' status and four tabs, each built by its own module.

    demo = build_app(service)                     # gr.Blocks with the queue configured
    demo.launch(**launch_kwargs(), server_name=..., server_port=...)

Gradio 6: theme and css are launch() arguments, not Blocks() arguments.
"""

from __future__ import annotations

import gradio as gr

from workbench.app_service import WorkbenchService
from workbench.ui import compare, dashboard, models, preferences, prompting, toxicity, train
from workbench.ui.common import harden
from workbench.votes import Votes

TITLE = "Dialogue summarization workbench"

CSS = """
.gradio-container {max-width: 1500px !important; margin: auto;}
.wb-title {font-size: 1.45rem; font-weight: 700; margin-top: 4px;}
.wb-subtitle {color: var(--body-text-color-subdued); font-size: 0.92rem;}
.wb-slots {display: flex; flex-wrap: wrap; gap: 6px; margin: 2px 0 2px 0;}
.wb-slot {display: flex; gap: 6px; align-items: baseline; border-radius: 8px; padding: 4px 10px;
          font-size: 0.82rem; border: 1px solid var(--border-color-primary); max-width: 100%; overflow: hidden;
          text-overflow: ellipsis; white-space: nowrap;}
.wb-slot-ok {background: #eef7f0;} .wb-slot-bad {background: #fdecec; color: #8a1c1c;}
.wb-slot b {flex: none;} .wb-slot span {min-width: 0; overflow: hidden; text-overflow: ellipsis;}
/* one line per chip: an unavailable slot's whole reason is in its tooltip and on its Compare card */
.wb-rev {color: #777; font-family: ui-monospace, monospace; font-size: 0.78rem;}
.wb-family {color: #555; font-size: 0.74rem; font-style: italic;}
.wb-card-family {color: #555; font-size: 0.74rem; font-style: italic; min-height: 1.2em;}
.wb-scorer-note {color: #6b4a00;}
.wb-slot-info {color: var(--body-text-color-subdued); font-size: 0.78rem; margin: 2px 0 6px 2px;}
.wb-notice {border-radius: 8px; padding: 8px 12px; margin: 4px 0; font-size: 0.92rem; white-space: pre-wrap;}
#compare-notice:not(:has(.wb-notice)) {display: none;}  /* no empty band between the inputs and the cards */
.wb-error {background: #fdecec; color: #8a1c1c; border: 1px solid #f3b7b7;}
.wb-warn {background: #fff6e0; color: #6b4a00; border: 1px solid #f1d48a;}
.wb-ok {background: #eef4fb; color: #1d3f66; border: 1px solid #c9dcf2;}
.wb-card {border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 8px 10px; min-height: 112px;
          background: var(--block-background-fill); display: flex; flex-direction: column; box-sizing: border-box;}
.wb-card .wb-metrics {margin-top: auto; padding-top: 6px;}  /* badges on the card's bottom edge: cards align */
.wb-card-model, .wb-card-family {white-space: nowrap; overflow: hidden; text-overflow: ellipsis;}
.wb-card-bad {background: #fdf3f3;}
.wb-card-title {font-weight: 700; font-size: 1.0rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;}
.wb-card-model {color: #555; font-size: 0.78rem;}
.wb-unavailable {color: #8a1c1c; font-size: 0.85rem; margin-top: 4px; overflow-wrap: anywhere;}
[id^="overlap-"] span, #prompt-overlap span {word-break: normal !important; overflow-wrap: anywhere !important;
                                             white-space: pre-wrap !important;}  /* long tokens wrap */
.wb-metrics {display: flex; flex-wrap: wrap; gap: 4px; margin-top: 6px;}
.wb-badge {display: inline-block; font-size: 0.76rem; padding: 1px 7px; border-radius: 999px; background: #eef1f5;
           border: 1px solid #d8dde5; white-space: nowrap;}
.wb-badge.wb-bad {background: #fde2e2; border-color: #f0a7a7; color: #8a1c1c; font-weight: 600;}
.wb-badge.wb-rouge {background: #e9f6ec; border-color: #bfe3c8;}
.wb-badge.wb-muted, .wb-muted {color: #777;}
.wb-footnote {color: var(--body-text-color-subdued); font-size: 0.8rem;}
.wb-meter {height: 8px; background: #e8ebef; border-radius: 4px; overflow: hidden; margin-top: 4px;}
.wb-meter-bar {height: 100%; background: #4C78A8;} .wb-meter-bar.wb-over {background: #d62728;}
.wb-meter-text {font-size: 0.85rem; margin: 3px 0 4px 0;}
#dash-runs th, #dash-runs td {white-space: nowrap !important;}  /* headers, dates and run ids unbroken */
.wb-score {font-size: 1.0rem; padding: 6px 10px; border-radius: 8px; background: #eef4fb;}
.wb-score.wb-bad {background: #fde2e2; color: #8a1c1c;}
"""


def launch_kwargs() -> dict:
    """Arguments for demo.launch() that style the app (Gradio 6 takes theme/css here). `show_error`: a value the
    components cannot take (text or nothing where a number belongs, sent through the API) is answered with gradio's
    message naming the input, instead of a bare "the app raised an exception"; handler crashes are already turned
    into messages by `guard`."""
    return {"theme": gr.themes.Soft(primary_hue="blue", neutral_hue="slate"), "css": CSS, "show_error": True}


def build_app(service: WorkbenchService, *, concurrency: int = 2, max_queue: int = 64, jobs=None,
              votes: Votes | None = None) -> gr.Blocks:
    """The whole app over one service. `concurrency` requests run at once per event (the models serialise their own
    calls); up to `max_queue` more wait in the queue, beyond that new requests are told the queue is full. With
    `jobs` (a workbench.jobs.TrainingJobs: the app was started with --allow-training) a Train tab runs the trainers;
    on a Space only its signed-in owner may start runs. `votes` (a workbench.votes.Votes) says where Compare's votes
    go (default: $WORKBENCH_VOTES or local/votes in the store); the Preferences tab shows them."""
    votes = votes or Votes()
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        models.build_header(service, demo)
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                vote_saved = compare.build(service, votes)
            with gr.Tab("Prompting", id="prompting"):
                prompting.build(service)
            with gr.Tab("Toxicity", id="toxicity"):
                toxicity.build(service, demo)
            with gr.Tab("Dashboard", id="dashboard"):
                dashboard.build(service, demo)
            with gr.Tab("Preferences", id="preferences") as preferences_tab:
                preferences.build(votes, preferences_tab, vote_saved)
            if jobs is not None:
                with gr.Tab("Train", id="train"):
                    train.build_train_tab(jobs, service, authorize=train.space_owner_only)
    harden(demo)
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    return demo

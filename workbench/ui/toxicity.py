"""Toxicity tab: score any text, and run every available model over a seeded sample of test dialogues."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from workbench import data, inputs
from workbench.app_service import WorkbenchService
from workbench.ui import charts
from workbench.ui.common import esc, guard, notice_html


def score_html(result: dict | None) -> str:
    if not result:
        return ""
    if not result.get("ok"):
        return notice_html(result)
    p = result["toxicity"]
    cls = "wb-score wb-bad" if p >= 0.5 else "wb-score"
    note = (f'<div class="wb-muted">Fallback scorer: {esc(result["scorer_note"])}</div>'
            if result.get("scorer_note") else "")
    return (f'<div class="{cls}"><b>{p:.3f}</b> probability toxic — {esc(result["label"])}'
            f'<span class="wb-muted"> · scorer {esc(result["scorer"])}</span>{note}</div>')


def scorer_note_html(service: WorkbenchService) -> str:
    """A warning at the top of the tab when the configured scorer could not be loaded (and why)."""
    notice = service.scorer_notice()
    return f'<div class="wb-notice wb-warn" role="status">⚠ {esc(notice)}</div>' if notice else ""


def build(service: WorkbenchService, demo: gr.Blocks | None = None) -> None:
    datasets = service.datasets()
    scorer_note = gr.HTML(scorer_note_html(service), elem_id="tox-scorer-note")
    if demo is not None:  # current after a "Refresh models" too
        demo.load(lambda: scorer_note_html(service), outputs=scorer_note, api_name="toxicity_scorer_note",
                  api_visibility="private")
    gr.Markdown("### Score any text")
    with gr.Row():
        text = gr.Textbox(label="Text", lines=3, max_lines=10, scale=4, elem_id="tox-text",
                          info=f"Up to {inputs.MAX_SCORE_CHARS:,} characters.")
        with gr.Column(scale=1, min_width=200):
            score_btn = gr.Button("Score toxicity", variant="primary", elem_id="tox-score")
            score_out = gr.HTML(elem_id="tox-score-result")
    score_json = gr.JSON(visible=False)

    gr.Markdown("### The models over a sample of test dialogues\n"
                "Greedy summaries with the instruction prompt, generated in batches; the same seeded sample for "
                "every model. 95% CIs are percentile bootstrap intervals of the mean.")
    with gr.Row():
        dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="Dataset (test split)",
                              interactive=bool(datasets), min_width=160)
        n = gr.Slider(*inputs.SAMPLE_RANGE, value=inputs.SAMPLE_DEFAULT, step=1, label="Dialogues (N)")
        seed = gr.Number(0, label="Sample seed", precision=0, minimum=0, maximum=inputs.SEED_MAX, min_width=120)
        run = gr.Button("Run the models over the sample", variant="primary", elem_id="tox-run")
    message = gr.HTML(elem_id="tox-message")
    plot = gr.Plot(charts.toxicity_distribution(None), label="Toxicity distributions", show_label=False,
                   elem_id="tox-plot")
    stats = gr.Dataframe(pd.DataFrame(columns=["model", "n", "mean", "std", "ci_low", "ci_high"]),
                         label="Mean toxicity per model (95% CI)", interactive=False, max_height=240)
    top = gr.Dataframe(pd.DataFrame(columns=["model", "toxicity", "fname", "summary"]),
                       label="Most toxic outputs in the sample", interactive=False, wrap=True, max_height=420,
                       column_widths=["16%", "9%", "12%", "63%"])

    @guard
    def score(text):
        return service.score(text)

    def sample(n, seed, dataset, progress=gr.Progress()):
        result = guard(service.toxicity_sample)(n, seed, dataset or data.DEMO,
                                                progress=lambda f, d: progress(f, desc=d))
        if not result.get("ok"):
            return notice_html(result), charts.toxicity_distribution(None), gr.skip(), gr.skip()
        message = f'<div class="wb-notice wb-ok">{esc(result["message"])}</div>'
        four = "{:.4f}".format  # every score with four decimals, so that the columns line up
        stats = result["stats"].assign(**{c: result["stats"][c].map(four)
                                          for c in ("mean", "std", "ci_low", "ci_high")})
        top = result["top"].assign(toxicity=result["top"]["toxicity"].map(four))
        return message, charts.toxicity_distribution(result["records"], result["stats"]), stats, top

    score_btn.click(score, text, score_json, api_name="score").then(
        score_html, score_json, score_out, api_name="score_render", api_visibility="private")
    run.click(sample, [n, seed, dataset], [message, plot, stats, top], api_name="toxicity_sample",
              concurrency_limit=1, concurrency_id="toxicity_sample", show_progress_on=plot)  # one bar, not four

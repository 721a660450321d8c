"""Dashboard tab: interactive charts of the measured runs in results/ (the single source of a run's metrics),
including PPO against preference optimisation (ORPO/CPO) from their shared start."""

from __future__ import annotations

import gradio as gr

from workbench.app_service import WorkbenchService
from workbench.dashboard import PUBLISHED_SOURCE, length_frame, published_reference
from workbench.ui import charts
from workbench.ui.common import esc

# Provenance table: pixel widths that keep every header on one line and the dates and run ids (the first columns)
# whole; the rest scrolls sideways at 1400 px.
RUN_COLUMN_WIDTHS = [175, 330, 95, 220, 160, 60, 55, 80, 80, 85, 100, 130, 110]


def render(service: WorkbenchService, dataset: str | None = None):
    d = service.dashboard(dataset)
    length = length_frame(service.runs(), d.dataset)
    cls = "wb-notice wb-ok" if d.datasets else "wb-notice wb-warn wb-empty"
    message = f'<div class="{cls}">{esc(d.message)}</div>'
    return (message, gr.Dropdown(choices=d.datasets, value=d.dataset, interactive=bool(d.datasets)),
            charts.rouge_chart(d.rouge), charts.improvement_chart(d.improvement),
            charts.params_chart(d.params, d.base_rouge1), charts.toxicity_chart(d.toxicity, d.toxicity_note, length),
            charts.curves_chart(d.curves), d.runs, *preference_outputs(d.preference))


def preference_outputs(comparison):
    """(message, chart, table) of PPO vs preference optimisation; without a preference run, one line and no chart."""
    if comparison is None or comparison.empty:
        text = comparison.message if comparison is not None else "No measured runs yet."
        return (f'<div class="wb-notice wb-warn" id="dash-pref-none">{esc(text)}</div>', gr.Plot(visible=False),
                gr.Dataframe(visible=False))
    return (f'<div class="wb-notice wb-ok">{esc(comparison.message)}</div>',
            gr.Plot(charts.preference_chart(comparison.diffs), visible=True),
            gr.Dataframe(comparison.table, visible=True))


def build(service: WorkbenchService, demo: gr.Blocks) -> None:
    with gr.Row():
        message = gr.HTML(elem_id="dash-message")
        dataset = gr.Dropdown([], value=None, label="Dataset / split of the charts", min_width=200, scale=0,
                              elem_id="dash-dataset")
        reload = gr.Button("↻ Reload results", size="sm", scale=0, min_width=140, elem_id="dash-reload")
    with gr.Row():
        rouge = gr.Plot(label="ROUGE per model", show_label=False, elem_id="dash-rouge")
        improvement = gr.Plot(label="Improvement over base", show_label=False, elem_id="dash-improvement")
    with gr.Row():
        params = gr.Plot(label="Trainable parameters vs ROUGE-1", show_label=False, elem_id="dash-params")
        toxicity = gr.Plot(label="Toxicity and length before/after PPO", show_label=False, elem_id="dash-toxicity")
    curves = gr.Plot(label="Training curves", show_label=False, elem_id="dash-curves")
    pref_message = gr.HTML(elem_id="dash-pref-message")
    pref_chart = gr.Plot(label="PPO vs preference optimisation", show_label=False, elem_id="dash-pref", visible=False)
    pref_table = gr.Dataframe(label="PPO vs preference optimisation: start, each run, their paired differences and "
                                    "cost (mean [95% CI])", interactive=False, wrap=False, visible=False,
                              elem_id="dash-pref-table")
    runs = gr.Dataframe(label="Measured runs (provenance)", interactive=False, wrap=False, max_height=360,
                        column_widths=RUN_COLUMN_WIDTHS, elem_id="dash-runs")
    with gr.Accordion("Published reference numbers — not measured here", open=False):
        gr.Markdown(f"**Source:** {PUBLISHED_SOURCE}. These numbers were measured by others, on the full-size "
                    "FLAN-T5-base and the real DialogSum test set; they are shown for orientation only and never "
                    "enter the charts above.")
        ref = published_reference()
        gr.Plot(charts.reference_chart(ref), label="Published ROUGE-1 (reference recipe)", show_label=False)
        gr.Dataframe(ref, interactive=False, wrap=True, elem_id="dash-reference")

    outputs = [message, dataset, rouge, improvement, params, toxicity, curves, runs, pref_message, pref_chart,
               pref_table]
    reload.click(lambda ds: render(service, ds), dataset, outputs, api_name="dashboard")
    dataset.input(lambda ds: render(service, ds), dataset, outputs, api_name="dashboard_dataset")
    demo.load(lambda: render(service), None, outputs, api_name="dashboard_load")

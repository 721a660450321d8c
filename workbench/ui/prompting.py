"""Prompting tab: zero-, one- and few-shot prompts on the base model, showing the exact prompt and its length."""

from __future__ import annotations

import gradio as gr

from workbench import app_service as svc
from workbench.app_service import WorkbenchService
from workbench.ui.common import esc, guard, highlight_value, notice_html, rouge_badges, tox_badge, user_error

SHOTS_PLACEHOLDER = ("#Person1#: Shall we play tennis on Saturday?\n#Person2#: Sure, at 10.\n"
                     "Summary: #Person1# and #Person2# will play tennis on Saturday at 10.\n"
                     f"{svc.SHOT_SEPARATOR}\n#Person1#: ...\nSummary: ...")


def tokens_html(result: dict) -> str:
    if not result or not result.get("ok"):
        return ""
    n, limit = result["prompt_tokens"], result["max_input_tokens"]
    share = min(100.0, 100.0 * n / limit)
    cls = "wb-meter-bar wb-over" if n > limit else "wb-meter-bar"
    shots = result.get("shots") or []
    kind = {0: "zero-shot (instruction prompt)", 1: "one-shot"}.get(len(shots), f"{len(shots)}-shot")
    ids = ", ".join(esc(s["fname"]) for s in shots)
    return (f'<div class="wb-meter"><div class="{cls}" style="width:{share:.1f}%"></div></div>'
            f'<div class="wb-meter-text"><b>{n:,} / {limit:,} tokens</b> · {esc(kind)}'
            f'{" · shots: " + ids if ids else ""}{" · <b>TRUNCATED</b>" if n > limit else ""}</div>')


def metrics_html(result: dict) -> str:
    if not result or not result.get("ok"):
        return ""
    return (f'<div class="wb-metrics"><span class="wb-badge">{result["latency_s"]:.2f} s</span>'
            f'{tox_badge(result.get("toxicity"))}{rouge_badges(result.get("rouge"))}</div>')


def render(result: dict | None):
    result = result or {}
    ok = bool(result.get("ok"))
    return (notice_html(result), tokens_html(result), result.get("prompt", "") if ok else "",
            result.get("output", "") if ok else "", metrics_html(result),
            highlight_value(result.get("overlap")) if ok else None,
            result.get("dropped_text", "") if ok else "")


def build(service: WorkbenchService) -> None:
    datasets = service.datasets()
    with gr.Row():
        with gr.Column(scale=3, min_width=360):
            with gr.Row():
                dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="Dataset",
                                      interactive=bool(datasets), scale=1, min_width=140,
                                      info="shots come from its train/validation split")
                example = gr.Dropdown(service.example_choices(datasets[0]) if datasets else [], value=None,
                                      label="Target dialogue (test split)", scale=2, min_width=200)
            dialogue = gr.Textbox(label="Dialogue to summarize", lines=8, max_lines=16, elem_id="prompt-dialogue",
                                  placeholder="#Person1#: ...\n#Person2#: ...",
                                  info=f"up to {svc.MAX_DIALOGUE_CHARS:,} characters")
            reference = gr.Textbox(label="Reference summary (optional: enables ROUGE)", lines=2, max_lines=6,
                                   elem_id="prompt-reference")
        with gr.Column(scale=2, min_width=280):
            shots = gr.Slider(0, svc.MAX_SHOTS, value=0, step=1, label="Number of shots (from the dataset)",
                              info="0 = the instruction prompt; 1–3 = in-context example blocks")
            source = gr.Radio(["dataset", "typed"], value="dataset", label="Shots from")
            shot_seed = gr.Number(0, label="Shot seed", precision=0, minimum=0, maximum=svc.SEED_MAX,
                                  info="which training examples are drawn (never the target itself)")
            typed = gr.Textbox(label=f"Typed shots (up to {svc.MAX_SHOTS}; separate with a line "
                                     f"'{svc.SHOT_SEPARATOR}')", lines=6, max_lines=14, visible=False,
                               placeholder=SHOTS_PLACEHOLDER, elem_id="prompt-typed-shots")
            max_new = gr.Slider(*svc.GEN_RANGES["max_new_tokens"], value=64, step=1, label="Max new tokens (greedy)")
            run = gr.Button("Build prompt and generate", variant="primary", elem_id="prompt-run")
    notice = gr.HTML(elem_id="prompt-notice")
    meter = gr.HTML(elem_id="prompt-tokens")
    with gr.Row():
        with gr.Column(scale=3, min_width=360):
            prompt = gr.Textbox(label="The exact prompt sent to the base model", lines=14, max_lines=30,
                                interactive=False, buttons=["copy"], elem_id="prompt-text")
        with gr.Column(scale=2, min_width=280):
            output = gr.Textbox(label="Base model output", lines=4, max_lines=12, interactive=False,
                                buttons=["copy"], elem_id="prompt-output")
            metrics = gr.HTML()
            overlap = gr.HighlightedText(label="Words also in the reference", color_map={"match": "#b7e4c7"},
                                         show_legend=False, show_inline_category=False, combine_adjacent=True)
    with gr.Accordion("Cut off by truncation (the model never sees this)", open=False):
        dropped = gr.Textbox(show_label=False, lines=3, max_lines=10, interactive=False)
    with gr.Accordion("Result as JSON (what the `prompt` API endpoint returns)", open=False):
        as_json = gr.JSON(label="prompt result")

    def examples_for(name):
        return gr.Dropdown(choices=service.example_choices(name) if name in datasets else [], value=None)

    @user_error
    def fill(name, example_id):
        if not example_id:
            return gr.skip(), gr.skip()
        fields = service.example_fields(name, example_id)
        return fields["dialogue"], fields["reference"]

    def toggle(kind):
        return gr.Textbox(visible=kind == "typed"), gr.Slider(interactive=kind != "typed"), \
            gr.Number(interactive=kind != "typed")

    @guard
    def run_prompt(dialogue, reference, shots, source, shot_seed, typed, dataset, max_new_tokens):
        return service.prompt(dialogue, reference, shots=shots, shot_source=source, shot_seed=shot_seed,
                              custom_shots=typed, dataset=dataset or svc.data.DEMO, max_new_tokens=max_new_tokens)

    dataset.input(examples_for, dataset, example, api_name="prompt_examples")
    example.input(fill, [dataset, example], [dialogue, reference], api_name="prompt_example")
    source.change(toggle, source, [typed, shots, shot_seed], api_name="prompt_shot_source",
                  api_visibility="private")
    run.click(run_prompt, [dialogue, reference, shots, source, shot_seed, typed, dataset, max_new], as_json,
              api_name="prompt", concurrency_id="models").then(
        render, as_json, [notice, meter, prompt, output, metrics, overlap, dropped], api_name="prompt_render",
        api_visibility="private")

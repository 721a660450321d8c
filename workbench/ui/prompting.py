"""Prompting tab: zero-, one- and few-shot prompts on the base model, showing the exact prompt and its length."""

from __future__ import annotations

import gradio as gr

from workbench import data, inputs
from workbench.app_service import WorkbenchService
from workbench.ui.common import (esc, example_picker, guard, highlight_value, notice_html, rouge_badges, tox_badge,
                                 wire_example_picker)

SHOTS_PLACEHOLDER = ("#Person1#: Shall we play tennis on Saturday?\n#Person2#: Sure, at 10.\n"
                     "Summary: #Person1# and #Person2# will play tennis on Saturday at 10.\n"
                     f"{inputs.SHOT_SEPARATOR}\n#Person1#: ...\nSummary: ...")


def tokens_html(result: dict) -> str:
    if not result or not result.get("ok"):
        return ""
    n, limit = result["prompt_tokens"], result["max_input_tokens"]
    share = min(100.0, 100.0 * n / limit)
    cls = "wb-meter-bar wb-over" if n > limit else "wb-meter-bar"
    shots = result.get("shots") or []
    kind = {0: "zero-shot (the instruction prompt)", 1: "one-shot"}.get(len(shots), f"{len(shots)}-shot")
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
    overlap = result.get("overlap") if ok else None
    return (notice_html(result), tokens_html(result), result.get("prompt", "") if ok else "",
            result.get("output", "") if ok else "", metrics_html(result),
            gr.HighlightedText(value=highlight_value(overlap), visible=bool(overlap)),
            result.get("dropped_text", "") if ok else "")


def shot_controls(kind: str):
    """Typed shots replace the number of shots and the seed: the box takes their place (no column of dead
    controls, no blank gap beside the dialogue)."""
    return (gr.Textbox(visible=kind == "typed"), gr.Slider(visible=kind != "typed"),
            gr.Number(visible=kind != "typed"))


def build_inputs(service: WorkbenchService):
    """The target dialogue on the left; the shots and the button on the right."""
    with gr.Row():
        with gr.Column(scale=3, min_width=360):
            dataset, example = example_picker(service, label="Target dialogue (test split)",
                                              info="Shots come from its train/validation split.")
            dialogue = gr.Textbox(label="Dialogue to summarize", lines=7, max_lines=16, elem_id="prompt-dialogue",
                                  placeholder="#Person1#: ...\n#Person2#: ...",
                                  info=f"Up to {inputs.MAX_DIALOGUE_CHARS:,} characters.")
            reference = gr.Textbox(label="Reference summary (optional: enables ROUGE)", lines=1, max_lines=6,
                                   elem_id="prompt-reference")
        with gr.Column(scale=2, min_width=280):
            shots = gr.Slider(0, inputs.MAX_SHOTS, value=0, step=1, label="Number of shots (from the dataset)",
                              info="0 is the instruction prompt; 1 to 3 are in-context example blocks.")
            source = gr.Radio(["dataset", "typed"], value="dataset", label="Shots from")
            shot_seed = gr.Number(0, label="Shot seed", precision=0, minimum=0, maximum=inputs.SEED_MAX,
                                  info="Which training examples are drawn (never the target itself).")
            typed = gr.Textbox(label=f"Typed shots (up to {inputs.MAX_SHOTS}; separate them with a line "
                                     f"'{inputs.SHOT_SEPARATOR}'; left empty, the run is zero-shot)", lines=6,
                               max_lines=14, visible=False, placeholder=SHOTS_PLACEHOLDER,
                               elem_id="prompt-typed-shots")
            max_new = gr.Slider(*inputs.GEN_RANGES["max_new_tokens"], value=64, step=1,
                                label="Max new tokens (greedy)")
            run = gr.Button("Build prompt and generate", variant="primary", elem_id="prompt-run")
    wire_example_picker(service, dataset, example, dialogue, reference, api_prefix="prompt")
    source.change(shot_controls, source, [typed, shots, shot_seed], api_name="prompt_shot_source",
                  api_visibility="private")
    return [dialogue, reference, shots, source, shot_seed, typed, dataset, max_new], run


def build(service: WorkbenchService) -> None:
    fields, run = build_inputs(service)
    notice = gr.HTML(elem_id="prompt-notice")
    meter = gr.HTML(elem_id="prompt-tokens")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            prompt = gr.Textbox(label="The exact prompt sent to the base model", lines=8, max_lines=30,
                                interactive=False, buttons=["copy"], elem_id="prompt-text")
        with gr.Column(scale=2, min_width=280):
            output = gr.Textbox(label="Base model output", lines=3, max_lines=12, interactive=False,
                                buttons=["copy"], elem_id="prompt-output")
            metrics = gr.HTML()
            overlap = gr.HighlightedText(label="Words also in the reference", color_map={"match": "#b7e4c7"},
                                         show_legend=False, show_inline_category=False, combine_adjacent=True,
                                         visible=False, elem_id="prompt-overlap")
    with gr.Accordion("Cut off by truncation (the model never sees this)", open=False):
        dropped = gr.Textbox(show_label=False, lines=3, max_lines=10, interactive=False)
    with gr.Accordion("Result as JSON (what the `prompt` API endpoint returns)", open=False):
        as_json = gr.JSON(label="prompt result")

    @guard
    def run_prompt(dialogue, reference, shots, source, shot_seed, typed, dataset, max_new_tokens):
        return service.prompt(dialogue, reference, shots=shots, shot_source=source, shot_seed=shot_seed,
                              custom_shots=typed, dataset=dataset or data.DEMO, max_new_tokens=max_new_tokens)

    run.click(run_prompt, fields, as_json, api_name="prompt", concurrency_id="models").then(
        render, as_json, [notice, meter, prompt, output, metrics, overlap, dropped], api_name="prompt_render",
        api_visibility="private")

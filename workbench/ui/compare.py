"""Compare tab: the four models on one dialogue, side by side."""

from __future__ import annotations

import gradio as gr

from workbench import app_service as svc
from workbench.app_service import WorkbenchService
from workbench.modelset import LABELS, SLOTS
from workbench.ui.common import esc, guard, highlight_value, notice_html, rouge_badges, tox_badge, user_error

HIGHLIGHT_COLORS = {"match": "#b7e4c7"}


def card_html(slot: str, entry: dict | None) -> str:
    title = esc(LABELS[slot])
    if entry is None:
        return f'<div class="wb-card"><div class="wb-card-title">{title}</div></div>'
    model = esc(entry.get("model") or "")
    rev = esc(str(entry.get("revision") or "")[:10])
    if not entry.get("available"):
        return (f'<div class="wb-card wb-card-bad"><div class="wb-card-title">{title}</div>'
                f'<div class="wb-card-model">{model}</div>'
                f'<div class="wb-unavailable">unavailable: {esc(entry.get("error"))}</div></div>')
    shared = ' title="one mixed-adapter batch shared with the other slots on the same base copy"' \
        if entry.get("shared_call") else ""
    latency = f'<span class="wb-badge"{shared}>{entry["latency_s"]:.2f} s{"*" if shared else ""}</span>'
    family = (f'<div class="wb-card-family" title="{esc(entry.get("note") or "")}">{esc(entry["family"])}</div>'
              if entry.get("family") else "")
    return (f'<div class="wb-card"><div class="wb-card-title">{title}</div>'
            f'<div class="wb-card-model">{model} <span class="wb-rev">@ {rev}</span></div>{family}'
            f'<div class="wb-metrics">{latency}{tox_badge(entry.get("toxicity"))}'
            f'{rouge_badges(entry.get("rouge"))}</div></div>')


def render(result: dict | None):
    """Result dict -> notice, then (card, summary, highlight) for each slot."""
    result = result or {}
    out = [notice_html(result)]
    models = result.get("models") or {}
    for slot in SLOTS:
        entry = models.get(slot)
        if entry is None:
            out += [card_html(slot, None), "", None]
        elif not entry.get("available"):
            out += [card_html(slot, entry), f"unavailable: {entry.get('error')}", None]
        else:
            out += [card_html(slot, entry), entry["text"], highlight_value(entry.get("overlap"))]
    return out


def build(service: WorkbenchService) -> None:
    datasets = service.datasets()
    with gr.Row():
        with gr.Column(scale=3, min_width=360):
            with gr.Row():
                dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="Dataset",
                                      interactive=bool(datasets), scale=1, min_width=140)
                example = gr.Dropdown(service.example_choices(datasets[0]) if datasets else [], value=None,
                                      label="Example (test split)", scale=2, min_width=200,
                                      info="fills in the dialogue and its reference")
            dialogue = gr.Textbox(label="Dialogue", lines=9, max_lines=18, elem_id="compare-dialogue",
                                  placeholder="#Person1#: ...\n#Person2#: ...",
                                  info=f"paste a dialogue (up to {svc.MAX_DIALOGUE_CHARS:,} characters) or pick an "
                                       "example")
            reference = gr.Textbox(label="Reference summary (optional)", lines=2, max_lines=6,
                                   elem_id="compare-reference",
                                   info=f"enables ROUGE and the word highlight; separate several references with a "
                                        f"line '{svc.REFERENCE_SEPARATOR}'")
        with gr.Column(scale=1, min_width=250):
            decoding = gr.Radio(list(svc.DECODING), value="greedy", label="Decoding")
            max_new = gr.Slider(*svc.GEN_RANGES["max_new_tokens"], value=64, step=1, label="Max new tokens")
            beams = gr.Slider(2, svc.GEN_RANGES["num_beams"][1], value=4, step=1, label="Beams (beam search)")
            temperature = gr.Slider(*svc.GEN_RANGES["temperature"], value=0.7, step=0.05,
                                    label="Temperature (sampling)")
            top_p = gr.Slider(*svc.GEN_RANGES["top_p"], value=0.9, step=0.05, label="Top-p (sampling)")
            seed = gr.Number(0, label="Seed (sampling)", precision=0, minimum=0, maximum=svc.SEED_MAX)
            run = gr.Button("Compare the four models", variant="primary", elem_id="compare-run")
    notice = gr.HTML(elem_id="compare-notice")
    cards, texts, highlights = [], [], []
    with gr.Row(equal_height=False, elem_classes="wb-cards"):
        for slot in SLOTS:
            with gr.Column(min_width=220, elem_classes="wb-col"):
                cards.append(gr.HTML(card_html(slot, None), elem_id=f"card-{slot}"))
                texts.append(gr.Textbox(label="Summary", lines=4, max_lines=12, interactive=False,
                                        buttons=["copy"], elem_id=f"summary-{slot}"))
                highlights.append(gr.HighlightedText(label="Words also in the reference", color_map=HIGHLIGHT_COLORS,
                                                     show_legend=False, show_inline_category=False,
                                                     combine_adjacent=True, elem_id=f"overlap-{slot}"))
    gr.Markdown("\\* base, LoRA and PPO share one copy of their family's base weights and run in one mixed-adapter "
                "batch, so they report the same latency. Each card names the family its model comes from (the "
                "models config's own models, or its fallbacks). Toxicity: probability from the scorer in the header "
                "(≥ 0.5 in red).",
                elem_classes="wb-footnote")
    with gr.Accordion("Result as JSON (what the `compare` API endpoint returns)", open=False):
        as_json = gr.JSON(label="compare result", elem_id="compare-json")

    def examples_for(name):
        return gr.Dropdown(choices=service.example_choices(name) if name in datasets else [], value=None)

    @user_error
    def fill(name, example_id):
        if not example_id:
            return gr.skip(), gr.skip()
        fields = service.example_fields(name, example_id)
        return fields["dialogue"], fields["reference"]

    @guard
    def compare(dialogue, reference, decoding, max_new_tokens, num_beams, temperature, top_p, seed):
        return service.compare(dialogue, reference, decoding=decoding, max_new_tokens=max_new_tokens,
                               num_beams=num_beams, temperature=temperature, top_p=top_p, seed=seed)

    dataset.input(examples_for, dataset, example, api_name="compare_examples")
    example.input(fill, [dataset, example], [dialogue, reference], api_name="compare_example")
    run.click(compare, [dialogue, reference, decoding, max_new, beams, temperature, top_p, seed], as_json,
              api_name="compare", concurrency_id="models").then(
        render, as_json, [notice, *[c for trio in zip(cards, texts, highlights) for c in trio]],
        api_name="compare_render", api_visibility="private")

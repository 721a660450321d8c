"""Compare tab: the chosen models (four by default, 2-6 of the configured slots) on one dialogue, side by side, and
a vote on their summaries.

The service answers with a `CompareResult` (dataclasses): the cards read its fields; the `compare` API endpoint
returns its `as_dict()`. The last Compare's outputs (models, revisions, texts, settings) are kept in a gr.State on the
server: a vote refers to them and is never recomputed or read back from the page. Voting rules and checks live in
workbench.votes.
"""

from __future__ import annotations

import gradio as gr

from workbench import inputs
from workbench.app_service import CompareResult, SlotOutput, WorkbenchService
from workbench.generation import GenerationSettings
from workbench.modelset import MAX_SHOWN, MIN_SHOWN
from workbench.ui.common import (esc, example_picker, guard, highlight_value, notice_html, oauth_available,
                                 rouge_badges, tox_badge, wire_example_picker)
from workbench.votes import Votes

HIGHLIGHT_COLORS = {"match": "#b7e4c7"}


def card_html(label: str, entry: SlotOutput | None) -> str:
    """A slot's card: its label, model @ revision, family, latency, toxicity and ROUGE (or why it is unavailable)."""
    title = f'<div class="wb-card-title" title="{esc(label)}">{esc(label)}</div>'
    if entry is None:
        return f'<div class="wb-card">{title}</div>'
    model = esc(entry.model or "")
    rev = esc(str(entry.revision or "")[:10])
    if not entry.available:
        return (f'<div class="wb-card wb-card-bad">{title}'
                f'<div class="wb-card-model" title="{model}">{model}</div>'
                f'<div class="wb-unavailable" title="{esc(entry.error)}">Unavailable: {esc(short(entry.error))}</div>'
                '</div>')
    shared = ' title="one mixed-adapter batch shared with the other slots on the same base copy"' \
        if entry.shared_call else ""
    latency = f'<span class="wb-badge"{shared}>{entry.latency_s:.2f} s{"*" if shared else ""}</span>'
    family = (f'<div class="wb-card-family" title="{esc(entry.note or entry.family)}">'
              f'{esc(entry.family)}</div>' if entry.family else '<div class="wb-card-family"></div>')
    return (f'<div class="wb-card">{title}'
            f'<div class="wb-card-model" title="{model} @ {esc(entry.revision or "")}">{model} '
            f'<span class="wb-rev">@ {rev}</span></div>{family}'
            f'<div class="wb-metrics">{latency}{tox_badge(entry.toxicity)}'
            f'{rouge_badges(entry.rouge)}</div></div>')


def short(text, limit: int = 180) -> str:
    """An unavailable slot's reason cut at a word boundary for its card (the whole of it is in the tooltip)."""
    text = str(text or "")
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def overlap_update(overlap: list | None):
    """The "Words also in the reference" box: shown only when there was a reference to compare with."""
    return gr.HighlightedText(value=highlight_value(overlap), visible=bool(overlap))


def notice_of(result: CompareResult | None) -> str:
    if result is None:
        return ""
    return notice_html({"ok": result.ok, "message": result.message, "notices": result.notices})


def render(result: CompareResult | None, slots: list[tuple[str, str]]):
    """A CompareResult -> the notice, then (card, summary, highlight) for each of `slots` ((label, slot) pairs: every
    slot of the app); a slot that was not compared gets an empty card."""
    out = [notice_of(result)]
    models = result.models if result is not None else {}
    for label, slot in slots:
        entry = models.get(slot)
        if entry is None:
            out += [card_html(label, None), "", overlap_update(None)]
        elif not entry.available:
            out += [card_html(label, entry), "Unavailable: the card above says why.", overlap_update(None)]
        else:
            out += [card_html(label, entry), entry.text, overlap_update(entry.overlap)]
    return out


def build_cards(slots: list[tuple[str, str]], shown: list[str]) -> tuple[list, list, list, list]:
    """(column, card, summary, highlight) components, one column per slot; those not in `shown` start hidden."""
    columns, cards, texts, highlights = [], [], [], []
    with gr.Row(equal_height=False, elem_classes="wb-cards"):
        for label, slot in slots:
            with gr.Column(min_width=200, elem_classes="wb-col", visible=slot in shown,
                           elem_id=f"col-{slot}") as column:
                columns.append(column)
                cards.append(gr.HTML(card_html(label, None), elem_id=f"card-{slot}"))
                texts.append(gr.Textbox(label="Summary", lines=4, max_lines=12, interactive=False,
                                        buttons=["copy"], elem_id=f"summary-{slot}"))
                highlights.append(gr.HighlightedText(label="Words also in the reference", color_map=HIGHLIGHT_COLORS,
                                                     show_legend=False, show_inline_category=False,
                                                     combine_adjacent=True, elem_id=f"overlap-{slot}",
                                                     visible=False))
    return columns, cards, texts, highlights


def slot_picker(service: WorkbenchService):
    """The slots to compare (a CheckboxGroup over every configured slot, four ticked by default) and the State that
    holds the last valid choice."""
    shown = service.default_slots()
    picker = gr.CheckboxGroup(service.slot_choices(), value=shown, elem_id="compare-slots",
                              label=f"Models to compare ({MIN_SHOWN}–{MAX_SHOWN}; the next Compare runs them)")
    return picker, gr.State(shown)


def wire_picker(service: WorkbenchService, picker, picked, notice, columns) -> None:
    """Ticking slots shows their columns (and the next Compare runs them); a choice outside 2-6 is refused with a
    sentence and the columns stay as they were."""
    every = [slot for _, slot in service.slot_choices()]

    def choose(value):
        try:
            slots = service.check_slots(value)
        except inputs.InputError as err:
            return gr.skip(), notice_html({"ok": False, "message": str(err)}), *[gr.skip()] * len(columns)
        return slots, "", *[gr.Column(visible=s in slots) for s in every]

    picker.input(choose, picker, [picked, notice, *columns], api_visibility="private")


def decoding_controls(kind: str):
    """Beams only matter for beam search, temperature, top-p and seed only for sampling: greyed out otherwise."""
    beam, sample = kind == "beam search", kind == "sampling"
    return (gr.Slider(interactive=beam), gr.Slider(interactive=sample), gr.Slider(interactive=sample),
            gr.Number(interactive=sample))


def build_inputs(service: WorkbenchService):
    """Example picker, dialogue and reference on the left; decoding settings (two to a row) and the button on the
    right, short enough that the button and the first result cards show in a 1400x1000 window."""
    with gr.Row():
        with gr.Column(scale=3, min_width=360):
            dataset, example = example_picker(service, label="Example (test split)")
            dialogue = gr.Textbox(label="Dialogue", lines=6, max_lines=18, elem_id="compare-dialogue",
                                  placeholder="#Person1#: ...\n#Person2#: ...",
                                  info=f"Paste a dialogue (up to {inputs.MAX_DIALOGUE_CHARS:,} characters) or pick "
                                       "an example.")
            reference = gr.Textbox(label="Reference summary (optional)", lines=1, max_lines=6,
                                   elem_id="compare-reference",
                                   info=f"Enables ROUGE and the word highlight; separate several references with a "
                                        f"line '{inputs.REFERENCE_SEPARATOR}'.")
        with gr.Column(scale=2, min_width=420, elem_id="compare-settings"):
            decoding = gr.Radio(list(inputs.DECODING), value="greedy", label="Decoding", elem_id="compare-decoding",
                                info=f"No {GenerationSettings.no_repeat_ngram_size}-gram appears twice in a summary "
                                     "(small models otherwise loop); a model that carries a stricter rule of its "
                                     "own keeps it.")
            with gr.Row():
                max_new = gr.Slider(*inputs.GEN_RANGES["max_new_tokens"], value=64, step=1, label="Max new tokens",
                                    min_width=200)
                beams = gr.Slider(2, inputs.GEN_RANGES["num_beams"][1], value=4, step=1, label="Beams (beam search)",
                                  interactive=False, min_width=200, elem_id="compare-beams")
            with gr.Row():
                temperature = gr.Slider(*inputs.GEN_RANGES["temperature"], value=0.7, step=0.05,
                                        label="Temperature (sampling)", interactive=False, min_width=200,
                                        elem_id="compare-temperature")
                top_p = gr.Slider(*inputs.GEN_RANGES["top_p"], value=0.9, step=0.05, label="Top-p (sampling)",
                                  interactive=False, min_width=200, elem_id="compare-top-p")
            with gr.Row(equal_height=False):
                seed = gr.Number(0, label="Seed (sampling)", precision=0, minimum=0, maximum=inputs.SEED_MAX,
                                 interactive=False, min_width=200, elem_id="compare-seed")
                run = gr.Button("Compare the models", variant="primary", elem_id="compare-run", min_width=200)
    wire_example_picker(service, dataset, example, dialogue, reference, api_prefix="compare")
    decoding.change(decoding_controls, decoding, [beams, temperature, top_p, seed], api_visibility="private")
    return dialogue, reference, [decoding, max_new, beams, temperature, top_p, seed], run


def build(service: WorkbenchService, votes: Votes | None = None):
    """The tab's components and events; returns the "Save vote" event (the app chains the Preferences refresh to it)."""
    dialogue, reference, settings, run = build_inputs(service)
    picker, picked = slot_picker(service)
    notice = gr.HTML(elem_id="compare-notice")
    slots = service.slot_choices()
    columns, cards, texts, highlights = build_cards(slots, picked.value)
    gr.Markdown("\\* The base model and its adapters (LoRA, PPO and any other adapter slot) share one copy of the base "
                "weights and run in one mixed-adapter batch, so they report the same latency. Each card names the "
                "family its model comes from (the models config's own models, or its fallbacks). Toxicity is the "
                "probability from the scorer in the header (0.5 or more in red).", elem_classes="wb-footnote")
    held = gr.State(None)  # the last Compare's outputs, server side: what a vote refers to
    shown = gr.State(None)  # the last CompareResult, server side: what the cards show
    vote_parts = build_vote_panel(service)
    with gr.Accordion("Result as JSON (what the `compare` API endpoint returns)", open=False):
        as_json = gr.JSON(label="compare result", elem_id="compare-json")
    wire_picker(service, picker, picked, notice, columns)

    def compare(dialogue, reference, decoding, max_new_tokens, num_beams, temperature, top_p, seed, chosen):
        result = guard(service.compare)(dialogue, reference, decoding=decoding, max_new_tokens=max_new_tokens,
                                        num_beams=num_beams, temperature=temperature, top_p=top_p, seed=seed,
                                        slots=chosen)
        if not isinstance(result, CompareResult):  # guard's message for a crash
            result = CompareResult.refused(result["message"])
        return result.as_dict(), result, Votes.comparison(result, dialogue)

    compared = run.click(compare, [dialogue, reference, *settings, picked], [as_json, shown, held],
                         api_name="compare", concurrency_id="models")
    compared.then(lambda result: render(result, slots), shown,
                  [notice, *[c for trio in zip(cards, texts, highlights) for c in trio]],
                  api_name="compare_render", api_visibility="private")
    compared.then(vote_panel, held, vote_parts[:4], api_visibility="private")
    return wire_votes(votes or Votes(), held, *vote_parts)


# ------------------------------------------------------------------------------------------------ votes


def slot_choices(held: dict | None) -> list[tuple[str, str]]:
    """(label, slot) of the summaries a Compare showed, as the vote controls offer them."""
    from workbench.votes import label

    return [(label(s, held), s) for s in Votes.shown_slots(held)]


def build_vote_panel(service: WorkbenchService):
    """(best, unacceptable, own summary, vote notice, save button, vote result) under the summaries."""
    with gr.Group(elem_id="vote-panel"):
        gr.Markdown("**Your vote** — which summary is best? Votes become preference pairs (see the Preferences tab) "
                    "for training a reward model or preference optimisation.")
        with gr.Row():
            choices = [c for c in service.slot_choices() if c[1] in service.default_slots()]
            best = gr.Radio(choices, value=None, label="Best summary", elem_id="vote-best", scale=2)
            unacceptable = gr.CheckboxGroup(choices, value=[], label="Unacceptable (optional)",
                                            elem_id="vote-unacceptable", scale=2)
        own = gr.Textbox(label="Or write a better summary (optional; it becomes the preferred one)", lines=2,
                         max_lines=6, max_length=inputs.MAX_REFERENCE_CHARS, elem_id="vote-own")
        with gr.Row():
            save = gr.Button("Save vote", variant="secondary", elem_id="vote-save", scale=0, min_width=140)
            if oauth_available():
                gr.LoginButton(scale=0)
        vote_notice = gr.HTML(elem_id="vote-notice")
    vote_json = gr.JSON(visible=False, label="vote result")
    return best, unacceptable, own, vote_notice, save, vote_json


def vote_panel(held):
    """After a Compare: offer the summaries that were shown, clear the last vote."""
    shown = slot_choices(held)
    message = "" if held else notice_html({"ok": False, "message": "No summaries to vote on: fix the message above "
                                                                   "and run Compare again."})
    return (gr.Radio(choices=shown, value=None), gr.CheckboxGroup(choices=shown, value=[]), gr.Textbox(value=""),
            message)


def vote_notice_html(answer: dict | None) -> str:
    if not answer:
        return ""
    if not answer.get("ok"):
        return notice_html(answer)
    return f'<div class="wb-notice wb-ok" role="status">✓ {esc(answer.get("message"))}</div>'


def wire_votes(votes: Votes, held, best, unacceptable, own, vote_notice, save, vote_json):
    @guard
    def save_vote(held_value, best_value, unacceptable_value, own_value, profile: gr.OAuthProfile | None = None):
        voter = getattr(profile, "username", None) if profile is not None else None
        return votes.save(held_value, best=best_value, unacceptable=unacceptable_value, own_summary=own_value,
                          voter=voter)

    saved = save.click(save_vote, [held, best, unacceptable, own], vote_json, api_name="vote",
                       concurrency_id="votes", concurrency_limit=8)
    saved.then(vote_notice_html, vote_json, vote_notice, api_visibility="private")
    return saved

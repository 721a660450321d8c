"""Header: which model serves each slot of the models config (or why it is unavailable), and a button that reloads
them."""

from __future__ import annotations

import gradio as gr

from workbench.app_service import WorkbenchService
from workbench.ui.common import esc


def status_html(summary: dict) -> str:
    """One chip per slot (model, revision and the family it comes from, or why it is unavailable), then a line with
    the load time, serving precision and scorer, and a warning for a fallback scorer."""
    chips = []
    families = {row.get("family") for row in summary["slots"] if row["ok"]}
    shared = families.pop() if len(families) == 1 else None  # one family serves every slot: said once, below
    for row in summary["slots"]:
        if row["ok"]:
            rev = esc(str(row["revision"] or "")[:10])
            family = (f'<span class="wb-family">{esc(row.get("family"))}</span>' if row.get("family") and not shared
                      else "")
            title = " — ".join(filter(None, (f"{row['model']} @ {row['revision']}", row.get("note"))))
            chips.append(f'<div class="wb-slot wb-slot-ok" title="{esc(title)}">'
                         f'<b>✓ {esc(row["label"])}</b><span>{esc(row["model"])}</span>'
                         f'<span class="wb-rev">@ {rev}</span>{family}</div>')
        else:
            chips.append(f'<div class="wb-slot wb-slot-bad" title="{esc(row["error"])}"><b>✗ {esc(row["label"])}</b>'
                         f'<span>unavailable: {esc(row["error"])}</span></div>')
    scorer = (f"toxicity scorer: {esc(summary['scorer'])}" if summary.get("scorer")
              else f"toxicity scorer unavailable: {esc(summary.get('scorer_error'))}")
    precision = esc(summary.get("precision_note") or summary["dtype"])
    device = f"{esc(summary['device'])} · " if summary.get("device") else ""
    every = f"all from the {esc(shared)} · " if shared else ""
    info = (f'<div class="wb-slot-info">{every}loaded in {summary["load_seconds"]:.1f} s · {device}{precision} · '
            f'input limit {summary["max_input_tokens"]} tokens · {scorer}</div>')
    scorer_note = (f'<div class="wb-slot-info wb-scorer-note">⚠ toxicity scorer fallback: '
                   f'{esc(summary["scorer_note"])}</div>' if summary.get("scorer_note") else "")
    notice = f'<div class="wb-slot-info">{esc(summary["notice"])}</div>' if summary.get("notice") else ""
    family = (f'<div class="wb-slot-info wb-family-note">{esc(summary["family_note"])}</div>'
              if summary.get("family_note") else "")
    return f'<div class="wb-slots">{"".join(chips)}</div>{family}{info}{scorer_note}{notice}'


def build_header(service: WorkbenchService, demo: gr.Blocks) -> None:
    with gr.Row(elem_classes="wb-header"):
        with gr.Column(scale=5, min_width=320):
            gr.HTML('<div class="wb-title">Dialogue summarization workbench</div>'
                    '<div class="wb-subtitle">FLAN-T5 prompted zero/one/few-shot · full fine-tune · LoRA · '
                    'PPO-detoxified LoRA · preference-optimised LoRA — side by side, with ROUGE and toxicity</div>')
        refresh = gr.Button("↻ Refresh models", size="sm", variant="secondary", elem_id="wb-refresh", scale=0,
                            min_width=150)
    status = gr.HTML(status_html(service.status_summary()), elem_id="wb-status")

    def reload():
        return status_html(service.reload())

    def current():
        return status_html(service.status_summary())

    refresh.click(reload, outputs=status, api_name="refresh", concurrency_limit=1, concurrency_id="reload")
    demo.load(current, outputs=status, api_name="status")

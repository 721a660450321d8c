"""Plotly figures built from the plain DataFrames of `workbench.dashboard` and of the Toxicity sample: pure functions,
no gradio.

Any text that came from a model or a file is HTML-escaped before it goes into a figure (Plotly renders a subset of
HTML in labels and hover text).
"""

from __future__ import annotations

import html
import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2", "#EECA3B", "#9D755D"]
MODEL_COLORS = {"Base (zero-shot)": "#4C78A8", "Full fine-tune": "#F58518", "LoRA": "#54A24B",
                "PPO (detoxified LoRA)": "#B279A2", "LoRA (PPO start, same run)": "#9FD19A",
                "ORPO-tuned (LoRA)": "#E45756", "CPO-tuned (LoRA)": "#72B7B2"}
ROUGE_NAMES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}
CURVE_NAMES = {"loss": "training loss", "reward_mean": "PPO reward (mean)", "kl": "PPO KL to start",
               "toxicity_mean": "PPO rollout toxicity"}


def _esc(text) -> str:
    return html.escape(str(text), quote=False)


def _color(name: str, i: int) -> str:
    return MODEL_COLORS.get(name, PALETTE[i % len(PALETTE)])


# LoRA, PPO and the preference-optimised adapters share an x: labels around it, markers of different shapes
LABEL_POSITIONS = {"lora": "middle left", "ppo": "middle right", "orpo": "top center", "cpo": "bottom center"}
MODEL_SYMBOLS = {"Full fine-tune": "square", "LoRA": "circle", "PPO (detoxified LoRA)": "diamond-open",
                 "ORPO-tuned (LoRA)": "triangle-up-open", "CPO-tuned (LoRA)": "star-open"}
# Short tick labels for the toxicity bars, so that five fit side by side; the hover text keeps the full names.
SHORT_NAMES = {"Base (zero-shot)": "Base", "Full fine-tune": "Full", "LoRA": "LoRA<br>eval run",
               "LoRA (PPO start, same run)": "LoRA<br>PPO start", "PPO (detoxified LoRA)": "PPO",
               "ORPO-tuned (LoRA)": "ORPO", "CPO-tuned (LoRA)": "CPO"}
MODEBAR_MARGIN = 44  # the right margin that holds Plotly's toolbar (upright, outside the plot and its title)


def _layout(fig: go.Figure, title: str, *, height: int = 380, **kwargs) -> go.Figure:
    """Common look. The title sits at the top edge and the legend on its own line(s) under it, left-aligned, so
    neither covers the other; the toolbar stands upright in the right margin, where it covers neither."""
    legend = kwargs.get("showlegend", True)
    kwargs.setdefault("margin", {"l": 60, "r": MODEBAR_MARGIN, "t": 96 if legend else 60, "b": 50})
    kwargs["margin"]["r"] = max(kwargs["margin"].get("r", 0), MODEBAR_MARGIN)
    fig.update_layout(modebar={"orientation": "v"},
                      title={"text": _esc(title), "x": 0.01, "xanchor": "left", "font": {"size": 15},
                             "y": 0.985, "yanchor": "top", "yref": "container"},
                      template="plotly_white", height=height,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "xanchor": "left"},
                      font={"family": "system-ui, sans-serif", "size": 12}, **kwargs)
    return fig


def empty_figure(message: str, title: str = "") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=_esc(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#666"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=260, showlegend=False)


def _error_bars(frame: pd.DataFrame, value: str = "mean") -> dict:
    return {"type": "data", "symmetric": False, "array": (frame["ci_high"] - frame[value]).clip(lower=0).tolist(),
            "arrayminus": (frame[value] - frame["ci_low"]).clip(lower=0).tolist(), "thickness": 1.2, "width": 4}


def rouge_chart(frame: pd.DataFrame) -> go.Figure:
    """Grouped bars: ROUGE type on x, one bar per model, 95% bootstrap CI as error bars."""
    title = "ROUGE F1 per model (mean, 95% bootstrap CI)"
    if frame is None or frame.empty:
        return empty_figure("no measured runs", title)
    fig = go.Figure()
    for i, (model, group) in enumerate(frame.groupby("model", sort=False)):
        n = group["n"].iloc[0]
        fig.add_bar(name=_esc(model), x=[ROUGE_NAMES.get(t, t) for t in group["rouge_type"]], y=group["mean"],
                    error_y=_error_bars(group), marker_color=_color(model, i),
                    hovertemplate=f"{_esc(model)}<br>%{{x}}: %{{y:.4f}}<br>n={n}<extra></extra>")
    fig.update_yaxes(title="F1", rangemode="tozero")
    return _layout(fig, title, barmode="group")


def improvement_chart(frame: pd.DataFrame) -> go.Figure:
    """Each adapted model minus the base model, in absolute ROUGE points (F1 x 100) with the 95% CI of the
    difference, per ROUGE type."""
    title = "Improvement over the base model (ROUGE points, 95% CI)"
    if frame is None or frame.empty:
        return empty_figure("needs a base run and at least one adapted model on the same dataset", title)
    fig = go.Figure()
    for i, (model, group) in enumerate(frame.groupby("model", sort=False)):
        how = _esc(group["ci"].iloc[0]) if "ci" in group else ""
        fig.add_bar(name=_esc(model), x=[ROUGE_NAMES.get(t, t) for t in group["rouge_type"]],
                    y=group["points"], marker_color=_color(model, i + 1),
                    error_y=_error_bars(group, "points"),
                    hovertemplate=f"{_esc(model)}<br>%{{x}}: %{{y:+.1f}} points<br>{how} 95% CI"
                                  "<extra></extra>")
    fig.update_yaxes(title="ROUGE points vs base", zeroline=True, zerolinecolor="#999")
    return _layout(fig, title, barmode="group")


def params_chart(frame: pd.DataFrame, base_rouge1: float | None = None) -> go.Figure:
    """Trainable parameters (log x) against ROUGE-1, with the base model's ROUGE-1 as a reference line."""
    title = "Trainable parameters vs ROUGE-1"
    if frame is None or frame.empty:
        return empty_figure("no adapted model with a parameter count", title)
    fig = go.Figure()
    for i, row in enumerate(frame.itertuples()):  # LoRA and PPO share a parameter count: a dot and a ring
        fig.add_scatter(x=[row.trainable], y=[row.rouge1], mode="markers+text", name=_esc(row.model),
                        text=[_esc(row.model).replace(" (", "<br>(")],
                        textposition=LABEL_POSITIONS.get(row.method, "top center"),
                        marker={"size": 18 if MODEL_SYMBOLS.get(row.model, "").endswith("-open") else 12,
                                "color": _color(row.model, i + 1), "symbol": MODEL_SYMBOLS.get(row.model, "circle"),
                                "line": {"width": 2.5, "color": _color(row.model, i + 1)}},
                        error_y={"type": "data", "symmetric": False, "array": [max(0, row.ci_high - row.rouge1)],
                                 "arrayminus": [max(0, row.rouge1 - row.ci_low)]},
                        hovertemplate=f"{_esc(row.model)}<br>%{{x:,}} trainable<br>ROUGE-1 %{{y:.4f}}<extra></extra>")
    if base_rouge1 is not None:
        fig.add_hline(y=base_rouge1, line_dash="dash", line_color="#4C78A8",
                      annotation_text="base (no adaptation)", annotation_position="bottom right")
    lows, highs = math.log10(max(frame["trainable"].min(), 1)), math.log10(max(frame["trainable"].max(), 1))
    fig.update_xaxes(type="log", title="trainable parameters (log scale)", range=[lows - 0.6, highs + 0.6])
    ys = [*frame["ci_low"], *frame["ci_high"], *([base_rouge1] if base_rouge1 is not None else [])]
    span = (max(ys) - min(ys)) or 0.1  # room above the top marker for its label
    fig.update_yaxes(title="ROUGE-1", range=[min(ys) - 0.1 * span, max(ys) + 0.25 * span])
    return _layout(fig, title, showlegend=True)


def _ci_bars(fig: go.Figure, frame: pd.DataFrame, *, row=None, col=None, fmt: str = ".4f") -> None:
    """One bar per row of `frame` (model, measured, mean, ci_low, ci_high, n) with its 95% CI as an error bar."""
    where = {"row": row, "col": col} if row else {}
    for i, r in enumerate(frame.itertuples()):
        fig.add_bar(x=[SHORT_NAMES.get(r.model, _esc(r.model))], y=[r.mean], name=_esc(r.model),
                    marker_color=_color(r.model, i),
                    error_y={"type": "data", "symmetric": False, "array": [max(0, r.ci_high - r.mean)],
                             "arrayminus": [max(0, r.mean - r.ci_low)]},
                    hovertemplate=f"{_esc(r.model)} ({_esc(r.measured)})<br>mean %{{y:{fmt}}}<br>n={r.n}"
                                  "<extra></extra>", **where)


def toxicity_chart(frame: pd.DataFrame, note: str = "", length: pd.DataFrame | None = None) -> go.Figure:
    """Mean toxicity with CIs: base/full/LoRA evaluation runs, and the PPO run's before (its LoRA start) and after.
    With `length` (the same columns, in words), the summaries' mean length before/after PPO stands beside it: a
    toxicity reward can be earned by writing less, so a drop in toxicity is read next to the length it kept."""
    title = "Toxicity of the summaries, before/after PPO (mean, 95% CI)"
    if frame is None or frame.empty:
        return empty_figure("no run measured toxicity", title)
    with_length = length is not None and not length.empty
    if with_length:
        title = "Toxicity and length of the summaries, before/after PPO (mean, 95% CI)"
        fig = make_subplots(rows=1, cols=2, column_widths=[0.68, 0.32], horizontal_spacing=0.12,
                            subplot_titles=["toxicity (p toxic)", "length (words)"])
        _ci_bars(fig, frame, row=1, col=1)
        _ci_bars(fig, length, row=1, col=2, fmt=".1f")
        fig.update_yaxes(title_text="toxicity probability", rangemode="tozero", row=1, col=1)
        fig.update_yaxes(title_text="words per summary", rangemode="tozero", row=1, col=2)
    else:
        fig = go.Figure()
        _ci_bars(fig, frame)
        fig.update_yaxes(title="toxicity probability", rangemode="tozero")
    fig.update_xaxes(tickangle=0, tickfont={"size": 10})
    both = {"LoRA", "LoRA (PPO start, same run)"} <= set(frame["model"])
    fig = _layout(fig, title, showlegend=False, margin={"l": 60, "r": 20, "t": 80 if note or with_length else 60,
                                                        "b": 100 if both else 60})
    if both:  # two LoRA bars: say why
        fig.add_annotation(text="LoRA eval run: the adapter's own evaluation run.<br>LoRA PPO start: the same "
                                "adapter re-measured inside the PPO run, on its dialogues.", showarrow=False, x=0,
                           y=-0.3, xref="paper", yref="paper", xanchor="left", font={"size": 11, "color": "#444"})
    if note:
        fig.update_layout(title_subtitle_text=_esc(note), title_subtitle_font={"size": 11, "color": "#444"})
    return fig


def curves_chart(frame: pd.DataFrame) -> go.Figure:
    """Training curves from results/logs: loss for the fine-tunes, reward/KL/toxicity per step for PPO."""
    title = "Training curves"
    if frame is None or frame.empty:
        return empty_figure("no training logs found in results/logs", title)
    metrics = [m for m in CURVE_NAMES if m in set(frame["metric"])]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[CURVE_NAMES[m] for m in metrics],
                        horizontal_spacing=0.08)
    shown = set()
    for col, metric in enumerate(metrics, 1):
        part = frame[frame["metric"] == metric]
        for i, (model, group) in enumerate(part.groupby("model", sort=False)):
            group = group.sort_values("step")
            fig.add_scatter(x=group["step"], y=group["value"], mode="lines", name=_esc(model),
                            line={"color": _color(model, i), "width": 1.6}, legendgroup=_esc(model),
                            showlegend=model not in shown, row=1, col=col,
                            hovertemplate=f"{_esc(model)}<br>step %{{x}}: %{{y:.4f}}<extra></extra>")
            shown.add(model)
        fig.update_xaxes(title_text="step", row=1, col=col)
    fig = _layout(fig, title, height=360, margin={"l": 60, "r": 20, "t": 70, "b": 90})
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0, "xanchor": "left"})
    return fig


def reference_chart(frame: pd.DataFrame) -> go.Figure:
    """The reference recipe's published numbers, in a chart of their own (never mixed with measured runs)."""
    title = "Published reference numbers (NOT measured here)"
    fig = go.Figure(go.Bar(x=[_esc(m) for m in frame["model"]], y=frame["rouge1"], marker_color="#BBBBBB",
                           marker_pattern_shape="/", text=[f"{v:.3f}" for v in frame["rouge1"]],
                           textposition="outside", hovertemplate="%{x}: ROUGE-1 %{y:.3f}<extra>published</extra>"))
    fig.update_yaxes(title="ROUGE-1 (published)", range=[0, 0.5])
    return _layout(fig, title, height=320, showlegend=False)  # the source is stated once, above the chart


def toxicity_distribution(records: pd.DataFrame, stats: pd.DataFrame | None = None) -> go.Figure:
    """Per-model distribution of toxicity over a sample (box + every point), mean and CI in the axis labels."""
    title = "Toxicity per model over the sample"
    if records is None or records.empty:
        return empty_figure("run a sample to see the distributions", title)
    labels = {}
    if stats is not None and not stats.empty:
        for row in stats.itertuples():
            labels[row.model] = f"{_esc(row.model)}<br>mean {row.mean:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}], n={row.n}"
    fig = go.Figure()
    for i, (model, group) in enumerate(records.groupby("model", sort=False)):
        hover = [_esc(s[:160] + ("…" if len(s) > 160 else "")) for s in group["summary"]]
        fig.add_box(y=group["toxicity"], name=labels.get(model, _esc(model)), boxpoints="all", jitter=0.4,
                    pointpos=0, marker={"size": 5, "opacity": 0.6, "color": _color(model, i)},
                    line={"color": _color(model, i)}, boxmean=True, customdata=hover,
                    hovertemplate="toxicity %{y:.3f}<br>%{customdata}<extra></extra>")
    fig.update_yaxes(title="toxicity probability", range=[-0.02, 1.02])
    return _layout(fig, title, height=420, showlegend=False)


def preference_chart(frame: pd.DataFrame, message: str = "") -> go.Figure:
    """PPO vs preference optimisation: one panel per metric (toxicity, ROUGE-1, ROUGE-2, length), a bar per run with
    the 95% CI of its paired difference against its start; zero = no change from the start."""
    title = "PPO vs preference optimisation: change from their start (paired, 95% CI)"
    if frame is None or frame.empty:
        return empty_figure(message or "no preference-optimisation run", title)
    metrics = list(dict.fromkeys(frame["metric"]))
    units = dict(zip(frame["metric"], frame["unit"]))
    fig = make_subplots(rows=1, cols=len(metrics), horizontal_spacing=0.07,
                        subplot_titles=[f"{_esc(m)} ({_esc(units[m])})" for m in metrics])
    for col, metric in enumerate(metrics, 1):
        part = frame[frame["metric"] == metric]
        for i, r in enumerate(part.itertuples()):
            fig.add_bar(x=[SHORT_NAMES.get(r.model, _esc(r.model)).replace(" (", "<br>(")], y=[r.mean],
                        name=_esc(r.model), marker_color=_color(r.model, i + 3), showlegend=False,
                        error_y={"type": "data", "symmetric": False, "array": [max(0.0, r.ci_high - r.mean)],
                                 "arrayminus": [max(0.0, r.mean - r.ci_low)], "thickness": 1.2, "width": 4},
                        hovertemplate=f"{_esc(r.model)}<br>{_esc(metric)} vs start: %{{y:+.3f}} {_esc(r.unit)}"
                                      f"<br>95% CI [{r.ci_low:+.3f}, {r.ci_high:+.3f}], n={r.n}<extra></extra>",
                        row=1, col=col)
        fig.update_yaxes(zeroline=True, zerolinecolor="#888", zerolinewidth=1.5, row=1, col=col)
    fig.update_xaxes(tickfont={"size": 10})
    fig = _layout(fig, title, height=340, showlegend=False, margin={"l": 50, "r": 20, "t": 80, "b": 50})
    if message:
        fig.update_layout(title_subtitle_text=_esc(message), title_subtitle_font={"size": 11, "color": "#444"})
    return fig

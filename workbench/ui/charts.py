"""Plotly figures built from the plain DataFrames of `workbench.app_service`: pure functions, no gradio.

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
                "PPO (detoxified LoRA)": "#B279A2", "LoRA (PPO start, same run)": "#9FD19A"}
ROUGE_NAMES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}
CURVE_NAMES = {"loss": "training loss", "reward_mean": "PPO reward (mean)", "kl": "PPO KL to start",
               "toxicity_mean": "PPO rollout toxicity"}


def _esc(text) -> str:
    return html.escape(str(text), quote=False)


def _color(name: str, i: int) -> str:
    return MODEL_COLORS.get(name, PALETTE[i % len(PALETTE)])


def _layout(fig: go.Figure, title: str, *, height: int = 380, **kwargs) -> go.Figure:
    kwargs.setdefault("margin", {"l": 60, "r": 20, "t": 60, "b": 50})
    fig.update_layout(title={"text": _esc(title), "x": 0.01, "xanchor": "left", "font": {"size": 15}},
                      template="plotly_white", height=height,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1, "xanchor": "right"},
                      font={"family": "system-ui, sans-serif", "size": 12}, **kwargs)
    return fig


def empty_figure(message: str, title: str = "") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=_esc(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#666"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=260)


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
    """Relative change over the base model, in percent, per ROUGE type."""
    title = "Improvement over the base model (%)"
    if frame is None or frame.empty:
        return empty_figure("needs a base run and at least one adapted model on the same dataset", title)
    fig = go.Figure()
    for i, (model, group) in enumerate(frame.groupby("model", sort=False)):
        fig.add_bar(name=_esc(model), x=[ROUGE_NAMES.get(t, t) for t in group["rouge_type"]],
                    y=group["improvement_pct"], marker_color=_color(model, i + 1),
                    text=[f"{v:+.0f}%" for v in group["improvement_pct"]], textposition="outside",
                    hovertemplate=f"{_esc(model)}<br>%{{x}}: %{{y:+.1f}}%<extra></extra>")
    fig.update_yaxes(title="% vs base", zeroline=True, zerolinecolor="#999")
    return _layout(fig, title, barmode="group")


def params_chart(frame: pd.DataFrame, base_rouge1: float | None = None) -> go.Figure:
    """Trainable parameters (log x) against ROUGE-1, with the base model's ROUGE-1 as a reference line."""
    title = "Trainable parameters vs ROUGE-1"
    if frame is None or frame.empty:
        return empty_figure("no adapted model with a parameter count", title)
    fig = go.Figure()
    for i, row in enumerate(frame.itertuples()):
        fig.add_scatter(x=[row.trainable], y=[row.rouge1], mode="markers+text", name=_esc(row.model),
                        text=[_esc(row.model).replace(" (", "<br>(")],
                        textposition="top center" if i % 2 == 0 else "bottom center",
                        marker={"size": 13, "color": _color(row.model, i + 1)},
                        error_y={"type": "data", "symmetric": False, "array": [max(0, row.ci_high - row.rouge1)],
                                 "arrayminus": [max(0, row.rouge1 - row.ci_low)]},
                        hovertemplate=f"{_esc(row.model)}<br>%{{x:,}} trainable<br>ROUGE-1 %{{y:.4f}}<extra></extra>")
    if base_rouge1 is not None:
        fig.add_hline(y=base_rouge1, line_dash="dash", line_color="#4C78A8",
                      annotation_text="base (no adaptation)", annotation_position="bottom right")
    lows, highs = math.log10(max(frame["trainable"].min(), 1)), math.log10(max(frame["trainable"].max(), 1))
    fig.update_xaxes(type="log", title="trainable parameters (log scale)", range=[lows - 0.6, highs + 0.6])
    fig.update_yaxes(title="ROUGE-1")
    return _layout(fig, title, showlegend=False)


def _ci_bars(fig: go.Figure, frame: pd.DataFrame, *, row=None, col=None, fmt: str = ".4f") -> None:
    """One bar per row of `frame` (model, measured, mean, ci_low, ci_high, n) with its 95% CI as an error bar."""
    where = {"row": row, "col": col} if row else {}
    for i, r in enumerate(frame.itertuples()):
        fig.add_bar(x=[_esc(r.model).replace(" (", "<br>(")], y=[r.mean], name=_esc(r.model),
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
        fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.12,
                            subplot_titles=["toxicity (p toxic)", "summary length (words)"])
        _ci_bars(fig, frame, row=1, col=1)
        _ci_bars(fig, length, row=1, col=2, fmt=".1f")
        fig.update_yaxes(title_text="toxicity probability", rangemode="tozero", row=1, col=1)
        fig.update_yaxes(title_text="words per summary", rangemode="tozero", row=1, col=2)
    else:
        fig = go.Figure()
        _ci_bars(fig, frame)
        fig.update_yaxes(title="toxicity probability", rangemode="tozero")
    fig.update_xaxes(tickangle=0)
    fig = _layout(fig, title, showlegend=False, margin={"l": 60, "r": 20, "t": 80 if note or with_length else 60,
                                                        "b": 60})
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
    fig.add_annotation(text="Source: DeepLearning.AI / AWS “Generative AI with LLMs”, lab 2 (DialogSum test)",
                       showarrow=False, x=0, y=-0.2, xref="paper", yref="paper", xanchor="left",
                       font={"size": 11, "color": "#444"})
    return _layout(fig, title, height=320, showlegend=False, margin={"l": 60, "r": 20, "t": 60, "b": 70})


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

"""Preferences tab: what the Compare votes (and automatic pairs) say about the models.

Counts, per-model win rates with 95% bootstrap CIs, a Bradley-Terry leaderboard on the Elo scale with bootstrap
intervals, the latest votes, and an export of the dataset repo (card + data, as pushed to the Hub). On a Space with
OAuth, its owner (signed in) also gets a button that pushes the dataset to the Hub as a dataset repo; everyone else,
and every local run, never sees it (locally `python -m workbench.preferences push` does the same). The numbers come
from workbench.preferences; this module only lays them out. It refreshes when the tab is opened, when a vote is
saved in Compare, and on its button.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from workbench.ui import charts
from workbench.ui.common import esc, notice_html, oauth_available, user_error
from workbench.votes import Votes, may_push

LEADERBOARD_COLUMNS = ["rank", "model", "score", "95% interval", "comparisons"]


def win_rate_chart(frame: pd.DataFrame) -> go.Figure:
    """One bar per model: the share of its comparisons it won, with the 95% bootstrap CI over votes."""
    title = "Win rate per model (95% bootstrap CI over votes)"
    if frame is None or frame.empty:
        return charts.empty_figure("no votes yet: compare a dialogue and save a vote", title)
    fig = go.Figure()
    for i, r in enumerate(frame.itertuples()):
        fig.add_bar(x=[charts._esc(r.model)], y=[r.win_rate], name=charts._esc(r.model),
                    marker_color=charts.PALETTE[i % len(charts.PALETTE)],
                    error_y={"type": "data", "symmetric": False, "array": [max(0.0, r.ci_high - r.win_rate)],
                             "arrayminus": [max(0.0, r.win_rate - r.ci_low)], "thickness": 1.2, "width": 4},
                    hovertemplate=f"{charts._esc(r.model)}<br>win rate %{{y:.3f}} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                                  f"<br>{r.wins} wins in {r.comparisons} comparisons, {r.votes} votes<extra></extra>")
    fig.add_hline(y=0.5, line_dash="dot", line_color="#999", annotation_text="even",
                  annotation_position="bottom right")
    fig.update_yaxes(title="win rate", range=[0, 1.05])
    return charts._layout(fig, title, showlegend=False)


def leaderboard_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The Bradley-Terry leaderboard rounded for reading: Elo-scale score and its bootstrap interval."""
    if frame is None or frame.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    intervals = [f"{lo:.0f} – {hi:.0f}" for lo, hi in zip(frame["ci_low"], frame["ci_high"])]
    return pd.DataFrame({"rank": frame["rank"], "model": frame["model"], "score": frame["score"].round(0).astype(int),
                         "95% interval": intervals, "comparisons": frame["comparisons"]}, columns=LEADERBOARD_COLUMNS)


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def counts_html(name: str, counts: dict) -> str:
    if not counts.get("pairs"):
        return (f'<div class="wb-notice wb-warn wb-empty" id="prefs-empty">No votes in {esc(name)} yet: run Compare, '
                'pick the best summary and press Save vote.</div>')
    named = {"vote": "from votes", "auto": "automatic"}
    sources = ", ".join(f"{n} {named.get(s) or 'from ' + esc(s)}"
                        for s, n in sorted(counts.get("by_source", {}).items()))
    return (f'<div class="wb-notice wb-ok"><b>{esc(name)}</b>: {_n(counts["votes"], "vote")} by '
            f'{_n(counts["voters"], "voter")} on {_n(counts["dialogues"], "dialogue")}, '
            f'{_n(counts["pairs"], "preference pair")} ({sources}).</div>')


def render(votes: Votes, name=None):
    """(counts, dataset choice, win-rate chart, leaderboard, latest votes) for one preference dataset."""
    name = votes.checked_dataset(name)
    stats = votes.stats(name)
    return (counts_html(name, stats.counts), gr.Dropdown(choices=votes.datasets(), value=name),
            win_rate_chart(stats.win_rates), leaderboard_table(stats.leaderboard), stats.latest)


def build(votes: Votes, tab=None, vote_saved=None) -> None:
    """The tab's components inside the current gr.Tab; `tab` (its gr.Tab) refreshes it when opened, `vote_saved`
    (Compare's Save vote event) after every vote."""
    with gr.Row():
        counts = gr.HTML(elem_id="prefs-counts")
        dataset = gr.Dropdown(votes.datasets(), value=votes.dataset, label="Preference dataset", scale=0,
                              min_width=220, elem_id="prefs-dataset")
        refresh = gr.Button("↻ Refresh", size="sm", scale=0, min_width=110, elem_id="prefs-refresh")
    with gr.Row():
        chart = gr.Plot(label="Win rates", show_label=False, elem_id="prefs-winrates")
        with gr.Column():
            leaderboard = gr.Dataframe(pd.DataFrame(columns=LEADERBOARD_COLUMNS), interactive=False, wrap=True,
                                       label="Bradley–Terry leaderboard (Elo scale: +400 = 10:1 odds; 95% bootstrap "
                                             "interval over votes)", elem_id="prefs-leaderboard")
            gr.Markdown("Pairs: the best summary beats every other shown one, your own summary beats them all, an "
                        "unacceptable one loses to every acceptable one. Train on them with `python -m "
                        f"trainers.reward --preferences {votes.dataset}` (a reward model for PPO) or `python -m "
                        f"trainers.preference --preferences {votes.dataset}` (ORPO/CPO/SimPO).",
                        elem_classes="wb-footnote")
    latest = gr.Dataframe(interactive=False, wrap=True, max_height=360, label="Latest votes",
                          elem_id="prefs-latest")
    with gr.Row():
        with gr.Column(scale=0, min_width=380):
            export = gr.Button("Export the dataset (.zip: card + data/pairs.jsonl)", size="sm",
                               elem_id="prefs-export")
            download = gr.File(label="Download", interactive=False, elem_id="prefs-file", height=120)
        gr.Markdown("The export holds the dataset as a Hub dataset repo: `datasets.load_dataset(\"json\", "
                    "data_files=\"data/*.jsonl\")` reads it; `python -m workbench.preferences push "
                    f"{votes.dataset} you/summary-votes` pushes it to the Hub.", elem_classes="wb-footnote")

    if oauth_available():
        build_push(votes, dataset, tab)
    outputs = [counts, dataset, chart, leaderboard, latest]
    shown = user_error(lambda name: render(votes, name))
    refresh.click(shown, dataset, outputs, api_name="preferences")
    dataset.input(shown, dataset, outputs, api_name="preferences_dataset")
    export.click(user_error(lambda name: str(votes.export(name))), dataset, download, api_name="preferences_export")
    if tab is not None:
        tab.select(shown, dataset, outputs, api_visibility="private")
    if vote_saved is not None:
        vote_saved.then(shown, dataset, outputs, api_visibility="private")


def owner_controls(profile: gr.OAuthProfile | None = None):
    """The push controls are shown only to the Space's owner, signed in (gradio fills `profile` from the session)."""
    return gr.Group(visible=may_push(getattr(profile, "username", None)))


def build_push(votes: Votes, dataset, tab=None) -> None:
    """The Space owner's "Push to the Hub" controls: hidden until the owner is signed in; the handler checks again
    (a hidden button is no permission)."""
    with gr.Group(visible=False, elem_id="prefs-push") as group:
        with gr.Row():
            repo = gr.Textbox(votes.push_repo(), label="Hub dataset repo", max_length=200, scale=2,
                              elem_id="prefs-push-repo")
            push = gr.Button("Push the dataset to the Hub", size="sm", scale=1, elem_id="prefs-push-button")
        pushed = gr.HTML(elem_id="prefs-push-notice")

    def push_dataset(name, repo_id, profile: gr.OAuthProfile | None = None):
        answer = votes.push(name, repo_id, getattr(profile, "username", None))
        if not answer["ok"]:
            return notice_html(answer)
        return f'<div class="wb-notice wb-ok" role="status">✓ {esc(answer["message"])}</div>'

    push.click(push_dataset, [dataset, repo], pushed, api_visibility="private", concurrency_id="push",
               concurrency_limit=1)
    if tab is not None:
        tab.select(owner_controls, None, group, api_visibility="private")

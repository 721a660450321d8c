"""Train tab: start a trainer CLI from the app, watch it live, stop and resume it, and serve its result in a slot.

Mounted only when the app runs with --allow-training. Every action goes through workbench.jobs.TrainingJobs, which
validates the request against fixed choices and runs exactly the command shown here, as an argument list.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench import jobs as jb
from workbench.jobs import JobError, TrainingJobs, TrainRequest
from workbench.ui.common import esc

REFRESH_S = 2.0
STATE_CLASS = {"running": "wb-ok", "stopping": "wb-warn", "queued": "wb-warn", "done": "wb-ok", "stopped": "wb-warn",
               "interrupted": "wb-warn", "cancelled": "wb-warn", "failed": "wb-error", "idle": "wb-ok"}
START_LABELS = {"full": "Start model (a base model)", "lora": "Start model (a base model)",
                "reward": "Tokenizer from (a base model)", "ppo": "Start adapter (a LoRA adapter to detoxify)",
                "preference": "Start adapter (a LoRA adapter)"}
DATA_LABELS = {"reward": "Preference pairs", "preference": "Preference dataset (from the store)"}
COLORS = ["#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756"]


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def status_html(status: dict) -> str:
    """One line about the job: state, step / total, elapsed, ETA, return code, and the jobs' own message."""
    state = status.get("state", "idle")
    if status.get("job") is None:
        return f'<div class="wb-notice wb-ok" id="train-state" data-state="idle">{esc(status.get("message"))}</div>'
    step, total = status.get("step"), status.get("max_steps")
    progress = f"step {step if step is not None else '–'} / {total if total else '–'}"
    parts = [f"<b>{esc(state)}</b>", esc(progress), f"elapsed {_duration(status.get('elapsed_s'))}",
             f"ETA {_duration(status.get('eta_s'))}"]
    if status.get("returncode") is not None:
        parts.append(f"exit {esc(status['returncode'])}")
    message = f'<div class="wb-footnote">{esc(status.get("message"))}</div>' if status.get("message") else ""
    percent = min(100.0, 100.0 * step / total) if step is not None and total else 0.0
    return (f'<div class="wb-notice {STATE_CLASS.get(state, "wb-ok")}" id="train-state" data-state="{esc(state)}" '
            f'data-step="{esc(step if step is not None else "")}">'
            f'{esc(status.get("recipe"))} → {esc(status.get("output"))} · job {esc(status["job"])}<br>'
            f'{" · ".join(parts)}<div class="wb-meter"><div class="wb-meter-bar" style="width:{percent:.1f}%">'
            f"</div></div>{message}</div>")


def curve_figure(frame: pd.DataFrame, title: str = "Training curves") -> go.Figure:
    """One panel per metric (loss; PPO reward, KL, toxicity, length), sharing the step axis."""
    metrics = list(dict.fromkeys(frame["metric"])) if len(frame) else []
    fig = make_subplots(rows=max(1, len(metrics)), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[esc(m) for m in metrics] or None)
    for i, metric in enumerate(metrics):
        part = frame[frame["metric"] == metric]
        fig.add_trace(go.Scatter(x=part["step"], y=part["value"], mode="lines+markers", name=esc(metric),
                                 line={"color": COLORS[i % len(COLORS)]}, marker={"size": 4}), row=i + 1, col=1)
    if not metrics:
        fig.add_annotation(text="no points yet: the curve appears at the first logged step", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(title_text="step", row=max(1, len(metrics)), col=1)
    fig.update_layout(title={"text": esc(title), "x": 0.01, "font": {"size": 15}}, template="plotly_white",
                      height=220 + 160 * max(1, len(metrics)), showlegend=False,
                      margin={"l": 60, "r": 20, "t": 70, "b": 50}, font={"family": "system-ui, sans-serif"})
    return fig


def queue_frame(queue: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"#": q["position"] + 1, "job": q["job"], "state": q["state"], "recipe": q["recipe"],
                          "output": q["output"]} for q in queue], columns=["#", "job", "state", "recipe", "output"])


def job_choices(jobs: TrainingJobs) -> list[tuple[str, str]]:
    return [(f"{j.id} · {j.request.get('recipe')} → {j.output} · {j.state}", j.id) for j in jobs.jobs()[:50]]


def notice(text: str, kind: str = "ok") -> str:
    return f'<div class="wb-notice wb-{kind}" role="status">{esc(text)}</div>' if text else ""


def _optional(value) -> int | None:
    """0 or empty in a number box means "the recipe's default"."""
    return None if value in (None, "", 0) else value


def request_from(recipe, model, dataset, output, max_steps, learning_rate, batch_size, logging_steps, save_steps,
                 train_limit, eval_limit, lora_r, min_new_tokens, loss, report_to, fresh) -> TrainRequest:
    return TrainRequest(recipe=recipe, model=model, dataset=dataset, output=(output or "").strip() or None,
                        max_steps=max_steps, learning_rate=_optional(learning_rate), batch_size=_optional(batch_size),
                        logging_steps=logging_steps, save_steps=save_steps, train_limit=_optional(train_limit),
                        eval_limit=_optional(eval_limit), lora_r=_optional(lora_r),
                        min_new_tokens=_optional(min_new_tokens), loss=loss or "orpo",
                        report_to=report_to or "none", fresh=bool(fresh))


def space_owner_only(request: gr.Request | None) -> str | None:
    """An `authorize` for build_train_tab on a Hugging Face Space: only the Space's owner, signed in with HF OAuth
    (gradio keeps the login in the session as "oauth_info"), may act; off a Space (no SPACE_AUTHOR_NAME) anyone who
    can reach an app started with --allow-training may."""
    import os

    owner = os.environ.get("SPACE_AUTHOR_NAME")
    if not owner:
        return None
    try:
        info = request.session.get("oauth_info") or {}  # type: ignore[union-attr]
    except (AttributeError, AssertionError):  # no request, or a server without the session middleware
        info = {}
    user = (info.get("userinfo") or {}).get("preferred_username")
    if user and user == owner:
        return None
    return "only the owner of this Space, signed in with Hugging Face, may start, stop or serve training runs"


def build_train_tab(jobs: TrainingJobs, service=None, *,
                    authorize: Callable[[gr.Request | None], str | None] | None = None) -> None:
    """The Train tab inside the current gr.Blocks / gr.Tab. `service` (a WorkbenchService) enables "serve in a
    slot"; `authorize(request)` returns None when this visitor may start/stop/resume/serve runs, else the reason
    (e.g. not the Space owner), and is asked on every such action."""
    TrainTab(jobs, service, authorize).build()


class TrainTab:
    """The tab's components and handlers (methods, so that each stays short and shares the jobs and service)."""

    def __init__(self, jobs: TrainingJobs, service=None, authorize=None):
        self.jobs, self.service, self.authorize = jobs, service, authorize
        self.recipes = jb.recipes()

    def build(self) -> None:
        fields, command = self.form()
        self.monitor()
        self.wire(fields, command)

    def form(self) -> tuple[list, gr.Code]:
        """Recipe, start model, dataset, output name and the main hyper-parameters; then the exact command."""
        with gr.Row():
            recipe = gr.Dropdown([(jb.RECIPE_LABELS[r], r) for r in self.recipes], value="lora", label="Recipe",
                                 elem_id="train-recipe", scale=1, min_width=200)
            models, datasets = jb.model_choices("lora", self.jobs.extra_models), jb.dataset_choices("lora")
            model = gr.Dropdown(models, value=models[0] if models else None, label=START_LABELS["lora"],
                                elem_id="train-model", scale=1, min_width=220)
            dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="Dataset",
                                  elem_id="train-dataset", scale=1)
            output = gr.Textbox(label="Output store name", placeholder="local/... (empty: from model and data)",
                                max_length=193, elem_id="train-output", scale=1)
        with gr.Row():
            numbers = [gr.Number(200, label="Steps", precision=0, minimum=1, maximum=100_000, elem_id="train-steps"),
                       gr.Number(0, label="Learning rate (0 = recipe default)", minimum=0, maximum=1, step=1e-4),
                       gr.Number(0, label="Batch size (0 = default)", precision=0, minimum=0, maximum=256),
                       gr.Number(5, label="Log every N steps", precision=0, minimum=1, maximum=10_000),
                       gr.Number(50, label="Checkpoint every N steps", precision=0, minimum=1, maximum=100_000)]
        with gr.Row():
            numbers += [gr.Number(0, label="Training rows (0 = all)", precision=0, minimum=0),
                        gr.Number(0, label="Evaluation rows (0 = all)", precision=0, minimum=0),
                        gr.Number(0, label="LoRA rank (0 = default)", precision=0, minimum=0, maximum=256),
                        gr.Number(20, label="Shortest summary, tokens (0 = the start model's)", precision=0,
                                  minimum=0, maximum=1024, elem_id="train-min-tokens")]  # full and LoRA only
            self.min_tokens = numbers[-1]
            self.loss = gr.Radio(list(jb.PREFERENCE_LOSSES), value="orpo", label="Preference loss", visible=False)
            report_to = gr.Dropdown(jb.report_to_choices(), value="none", label="Report to (experiment tracking)")
            fresh = gr.Checkbox(False, label="Start over (--fresh: discard this output's checkpoints)")
        command = gr.Code(label="The command this runs (copy it to run the same training in a terminal)",
                          language="shell", interactive=False, lines=2, buttons=["copy"], elem_id="train-command")
        self.recipe, self.model, self.dataset = recipe, model, dataset
        fields = [recipe, model, dataset, output, *numbers, self.loss, report_to, fresh]
        command.value = self.preview(*[f.value for f in fields])[0]  # the default request's command
        return fields, command

    def monitor(self) -> None:
        """Start / Stop / Resume, the job, its status line, curves, log tail and the queue; serving when possible."""
        with gr.Row():
            self.start = gr.Button("Start", variant="primary", elem_id="train-start")
            self.stop = gr.Button("Stop (checkpoint, then exit)", variant="stop", elem_id="train-stop")
            self.resume = gr.Button("Resume", elem_id="train-resume")
            self.job = gr.Dropdown(job_choices(self.jobs), value=None, label="Job", elem_id="train-job", scale=2)
        self.message = gr.HTML(elem_id="train-notice")
        self.state = gr.HTML(status_html(self.jobs.status()), elem_id="train-status")
        self.plot = gr.Plot(curve_figure(pd.DataFrame(columns=["step", "metric", "value"])), show_label=False,
                            elem_id="train-curve")
        self.log = gr.Textbox(label="Log (last lines)", lines=10, max_lines=20, interactive=False, autoscroll=True,
                              elem_id="train-log")
        self.queue = gr.Dataframe(queue_frame([]), label="Queue (one run at a time)", interactive=False,
                                  elem_id="train-queue")
        self.slot = self.serve = None
        if self.service is not None:
            with gr.Row():
                ms = self.service.models  # the app's one list of slots: every one but the base
                choices = [(ms.label(s), s) for s in ms.slots if s != "base"]
                self.slot = gr.Dropdown(choices, value="lora", label="Serve the finished run in slot",
                                        elem_id="train-slot", scale=1)
                self.serve = gr.Button("Serve in slot (same path as Refresh models)", elem_id="train-serve", scale=1)
        self.shown = gr.State(None)  # (job, curve points) last drawn: the plot is redrawn only when it changed
        self.timer = gr.Timer(REFRESH_S)

    def wire(self, fields: list, command: gr.Code) -> None:
        """Every event has an api_name; Start/Stop/Resume share one concurrency group so they run one at a time."""
        outputs = [self.state, self.plot, self.log, self.queue, self.job, self.shown]
        self.recipe.input(self.choices, self.recipe, [self.model, self.dataset, self.loss, self.min_tokens],
                          api_name="train_choices").then(
            self.preview, fields, [command, self.message], api_name="train_choices_preview",
            api_visibility="private")
        gr.on([f.input for f in fields], self.preview, fields, [command, self.message], api_name="train_preview",
              show_progress="hidden", trigger_mode="always_last")  # typing: the command follows the last keystroke
        self.start.click(self.do_start, fields, [self.message, self.job], api_name="train_start",
                         concurrency_id="train").then(
            self.refresh, [self.job, self.shown], outputs, api_name="train_start_refresh", api_visibility="private")
        self.stop.click(self.do_stop, self.job, self.message, api_name="train_stop", concurrency_id="train")
        self.resume.click(self.do_resume, self.job, self.message, api_name="train_resume", concurrency_id="train")
        self.job.input(self.refresh, [self.job, gr.State(None)], outputs, api_name="train_job")
        self.timer.tick(self.refresh, [self.job, self.shown], outputs, api_name="train_status",
                        show_progress="hidden")
        if self.serve is not None:
            self.serve.click(self.do_serve, [self.job, self.slot], self.message, api_name="train_serve",
                             concurrency_id="models")

    # -------------------------------------------------------------------------------------------- handlers

    def refused(self, request: gr.Request | None) -> str | None:
        return self.authorize(request) if self.authorize is not None else None

    def choices(self, name):
        models = jb.model_choices(name, self.jobs.extra_models) if name in self.recipes else []
        datasets = jb.dataset_choices(name) if name in self.recipes else []
        return (gr.Dropdown(choices=models, value=models[0] if models else None, label=START_LABELS.get(name)),
                gr.Dropdown(choices=datasets, value=datasets[0] if datasets else None,
                            label=DATA_LABELS.get(name, "Dataset")),
                gr.Radio(visible=name == "preference"),
                gr.Number(visible=name in ("full", "lora")))  # PPO and preference keep their start's minimum

    def preview(self, *values):
        try:
            return self.jobs.preview(request_from(*values))[1], ""
        except JobError as err:
            return f"# not runnable: {err}", notice(str(err), "error")

    def do_start(self, recipe, model, dataset, output, max_steps, learning_rate, batch_size, logging_steps,
                 save_steps, train_limit, eval_limit, lora_r, min_new_tokens, loss, report_to, fresh,
                 request: gr.Request = None):
        """Queue the run. Named parameters, not *values: gradio passes the visitor's request only to a handler
        whose signature it can place it in."""
        if (reason := self.refused(request)) is not None:
            return notice(reason, "error"), gr.skip()
        try:
            started = self.jobs.start(request_from(recipe, model, dataset, output, max_steps, learning_rate,
                                                   batch_size, logging_steps, save_steps, train_limit, eval_limit,
                                                   lora_r, min_new_tokens, loss, report_to, fresh))
        except JobError as err:
            return notice(str(err), "error"), gr.skip()
        verb = "started" if started.state == "running" else "queued behind the running job"
        return notice(f"job {started.id} {verb}"), gr.Dropdown(choices=job_choices(self.jobs), value=started.id)

    def act(self, action: str, job_id, request: gr.Request | None):
        if (reason := self.refused(request)) is not None:
            return notice(reason, "error")
        job_id = job_id or getattr(self.jobs.current(), "id", None)
        if not job_id:
            return notice("no job to act on", "warn")
        try:
            done = getattr(self.jobs, action)(job_id)
        except JobError as err:
            return notice(str(err), "error")
        return notice(f"job {done.id}: {done.state}" + (f" ({done.message})" if done.message else ""))

    def do_stop(self, job_id, request: gr.Request = None):
        return self.act("stop", job_id, request)

    def do_resume(self, job_id, request: gr.Request = None):
        return self.act("resume", job_id, request)

    def do_serve(self, job_id, slot, request: gr.Request = None):
        if (reason := self.refused(request)) is not None:
            return notice(reason, "error")
        return serve_message(self.jobs, self.service, job_id, slot)

    def refresh(self, job_id, last):
        """The timer's tick (every REFRESH_S): status line, curves (only when they changed), log tail, queue."""
        status = self.jobs.status(job_id or None)
        key, figure = None, gr.skip()
        if status.get("job"):
            curves = self.jobs.curves(status["job"])
            key = (status["job"], len(curves))
            if key != (tuple(last) if last else None):
                figure = curve_figure(curves, f"{status.get('recipe')} → {status.get('output')}")
        return (status_html(status), figure, status.get("log_tail", ""), queue_frame(status["queue"]),
                gr.Dropdown(choices=job_choices(self.jobs)), key)


def serve_message(jobs: TrainingJobs, service, job_id: str | None, slot: str) -> str:
    """Serve a finished job's output in `slot` (jobs.serve_in_slot) and say how the slot came back."""
    try:
        job = jobs.get(job_id) if job_id else jobs.current()
        if job is None or job.state != "done":
            raise JobError("serve: choose a finished job (state done)")
        config = service.models.config
        servable = jb.servable_slots(job.method, {s: config.kind(s) for s in service.models.slots if s != "base"})
        if slot not in servable:
            allowed = ", ".join(servable) or "none (a reward model is used by PPO, not served)"
            raise JobError(f"serve: a {job.method} run can be served in: {allowed}")
        summary = jb.serve_in_slot(service, slot, job.output)
    except JobError as err:
        return notice(str(err), "error")
    row = next((s for s in summary.get("slots", []) if s.get("slot") == slot), {})
    if summary.get("notice"):
        return notice(f"{slot} now names {job.output}, but the models were not reloaded: {summary['notice']}", "warn")
    if row.get("ok") and row.get("model") == job.output:
        return notice(f"{slot} serves {job.output} revision {str(row.get('revision'))[:12]}")
    return notice(f"{slot} could not serve {job.output}: {row.get('error') or row.get('note') or 'see the header'}",
                  "error")

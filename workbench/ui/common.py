"""Small helpers shared by the tabs: escaped HTML fragments and a guard that turns crashes into messages.

Every piece of text that came from a user, a model or a file goes through `esc` before it is put into HTML.
"""

from __future__ import annotations

import functools
import html
import logging
import traceback

log = logging.getLogger("workbench.ui")


def esc(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def guard(fn):
    """Wrap a handler returning a result dict: an unexpected exception becomes {"ok": False, "message": ...}."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - the page shows a message instead of a broken state
            log.error("handler %s failed:\n%s", fn.__name__, traceback.format_exc())
            return {"ok": False, "message": f"internal error ({type(err).__name__}): {str(err)[:300]}"}

    return wrapper


def user_error(fn):
    """Wrap a handler that fills components: a problem with what the user picked becomes a gr.Error (shown as a
    message) instead of an opaque failure."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from workbench.app_service import InputError

        try:
            return fn(*args, **kwargs)
        except InputError as err:
            import gradio as gr

            raise gr.Error(str(err)) from None

    return wrapper


def notice_html(result: dict | None, *, ok_text: str = "") -> str:
    """The message line above a tab's outputs: red for refusals/errors, amber for warnings, nothing when clean."""
    if not result:
        return ""
    if not result.get("ok"):
        return f'<div class="wb-notice wb-error" role="alert">{esc(result.get("message"))}</div>'
    notices = result.get("notices") or ([result["message"]] if result.get("message") else [])
    if notices:
        return "".join(f'<div class="wb-notice wb-warn" role="status">⚠ {esc(n)}</div>' for n in notices)
    return f'<div class="wb-notice wb-ok">{esc(ok_text)}</div>' if ok_text else ""


def tox_badge(value) -> str:
    if value is None:
        return '<span class="wb-badge">toxicity n/a</span>'
    cls = "wb-badge wb-bad" if value >= 0.5 else "wb-badge"
    return f'<span class="{cls}">toxicity {value:.3f}</span>'


def rouge_badges(rouge: dict | None) -> str:
    if not rouge:
        return '<span class="wb-badge wb-muted">no reference: no ROUGE</span>'
    names = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L"}
    return "".join(f'<span class="wb-badge wb-rouge">{names.get(k, esc(k))} {v:.3f}</span>' for k, v in rouge.items())


def highlight_value(overlap: list | None) -> list[tuple[str, str | None]] | None:
    """word_overlap pairs -> HighlightedText value: matched words highlighted, separated by plain spaces."""
    if not overlap:
        return None
    out: list[tuple[str, str | None]] = []
    for i, (token, matched) in enumerate(overlap):
        if i:
            out.append((" ", None))
        out.append((str(token), "match" if matched else None))
    return out

"""Small helpers shared by the tabs: escaped HTML fragments, a guard that turns crashes into messages, the example
picker of Compare and Prompting, and `harden`, which makes gradio's own input checks answer in one sentence.

Every piece of text that came from a user, a model or a file goes through `esc` before it is put into HTML.
"""

from __future__ import annotations

import functools
import html
import logging
import re
import traceback

from workbench.inputs import InputError, shown

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
            return {"ok": False, "message": f"Something went wrong inside the app ({type(err).__name__}: "
                                            f"{str(err)[:300]}). Try again; if it persists, report it."}

    return wrapper


def user_error(fn):
    """Wrap a handler that fills components: a problem with what the user picked becomes a gr.Error (shown as a
    message) instead of an opaque failure."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
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
    """word_overlap pieces -> HighlightedText value: matched words highlighted. The pieces already hold the spaces
    and punctuation between the words, so they are joined as they come ("Hello, world", not "Hello , world")."""
    if not overlap:
        return None
    return [(str(token), "match" if matched else None) for token, matched in overlap]


def example_picker(service, *, label: str, info: str | None = None):
    """The Dataset and Example dropdowns over the dataset's test split (Compare and Prompting): (dataset, example)."""
    import gradio as gr

    datasets = service.datasets()
    with gr.Row():
        dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="Dataset",
                              interactive=bool(datasets), scale=1, min_width=140, info=info)
        example = gr.Dropdown(service.example_choices(datasets[0]) if datasets else [], value=None, label=label,
                              scale=2, min_width=200, info="fills in the dialogue and its reference")
    return dataset, example


def wire_example_picker(service, dataset, example, dialogue, reference, *, api_prefix: str) -> None:
    """Choosing a dataset lists its examples; choosing an example fills in the dialogue and its reference(s).
    Endpoints: `{api_prefix}_examples` and `{api_prefix}_example`."""
    import gradio as gr

    datasets = service.datasets()

    def examples_for(name):
        return gr.Dropdown(choices=service.example_choices(name) if name in datasets else [], value=None)

    @user_error
    def fill(name, example_id):
        if not example_id:
            return gr.skip(), gr.skip()
        fields = service.example_fields(name, example_id)
        return fields["dialogue"], fields["reference"]

    dataset.input(examples_for, dataset, example, api_name=f"{api_prefix}_examples")
    example.input(fill, [dataset, example], [dialogue, reference], api_name=f"{api_prefix}_example")


# ------------------------------------------------------------------------------------------------ gradio's checks

_TYPE_REPR = re.compile(r"\s*\(type: <class '[^']*'>\)")
_CHOICES = re.compile(r"(is not in the list of choices):.*$", re.S)
_KINDS = {bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object"}


def _name(block) -> str:
    return str(getattr(block, "label", None) or getattr(block, "elem_id", None) or block.get_block_name())


def _refuse(block, message: str):
    """A gr.Error with one sentence for the user and one log line for the operator (no traceback)."""
    import gradio as gr

    message = _CHOICES.sub(r"\1.", _TYPE_REPR.sub("", message)).strip()
    message = html.escape(f"{_name(block)}: {message[:300]}", quote=False)  # the error modal renders HTML
    log.warning("rejected input: %s", message.replace("\n", " "))
    return gr.Error(message, print_exception=False)


def _checked(block, preprocess):
    """`block.preprocess`, refusing a JSON number/list/object sent where text belongs (gradio would turn it into
    its Python repr and pass that on as text) and turning gradio's own refusals into `_refuse` ones."""
    import gradio as gr

    text, numeric = isinstance(block, gr.Textbox), isinstance(block, (gr.Slider, gr.Number))

    @functools.wraps(preprocess)
    def wrapper(payload):
        if text and payload is not None and not isinstance(payload, str):
            raise _refuse(block, f"must be text, not {_KINDS.get(type(payload), 'a ' + type(payload).__name__)}")
        if numeric and payload is not None and (isinstance(payload, bool) or not isinstance(payload, (int, float))):
            raise _refuse(block, f"must be a number (got {shown(payload)})")
        try:
            return preprocess(payload)
        except gr.Error as err:
            raise _refuse(block, str(err.message)) from None
        except (TypeError, ValueError, OverflowError) as err:  # e.g. NaN where a whole number belongs
            what = "must be a finite number" if numeric else f"cannot take this value ({err})"
            raise _refuse(block, f"{what} (got {shown(payload)})") from None

    return wrapper


def harden(demo) -> None:
    """Apply `_checked` to every input component of the app, and answer a call with too few inputs with one
    sentence naming the inputs (gradio's own message lists the components' Python reprs and logs a traceback)."""
    from gradio.components import Component

    for block in demo.blocks.values():
        if isinstance(block, Component) and not getattr(block, "_wb_checked", False):
            block.preprocess = _checked(block, block.preprocess)
            block._wb_checked = True
    validate = demo.validate_inputs

    def validate_inputs(block_fn, inputs):
        if len(inputs) < len(block_fn.inputs):
            import gradio as gr

            shown = [b for b in block_fn.inputs if not getattr(b, "skip_api", False)]  # a gr.State is not sent
            wanted = ", ".join(_name(b) for b in shown)
            message = (f"The {block_fn.api_name or block_fn.name} endpoint takes {len(shown)} inputs "
                       f"({wanted}); the request sent {len(inputs)}.")
            log.warning("rejected call: %s", message)
            raise gr.Error(message, print_exception=False)
        return validate(block_fn, inputs)

    demo.validate_inputs = validate_inputs


def oauth_available() -> bool:
    """On a Hugging Face Space with OAuth enabled (`hf_oauth: true` in its card: the Space gets OAUTH_CLIENT_ID) and
    gradio's OAuth extras installed, a sign-in button names the voter (and the Space owner). Elsewhere votes are
    anonymous and the extras are not needed (a LoginButton would make gradio require them, and on a Space without
    OAuth refuse to start)."""
    import importlib.util
    import os

    from gradio.utils import get_space  # how gradio itself tells a Space (SYSTEM=spaces) from a local run

    return bool(get_space() and os.environ.get("OAUTH_CLIENT_ID")) and \
        all(importlib.util.find_spec(m) for m in ("authlib", "itsdangerous"))

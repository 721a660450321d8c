"""Hostile input to the public app, through the launched server where a user would meet it (gradio_client and raw
HTTP): every request gets a bounded, clear answer; nothing typed runs in the page; no file outside the store and the
app's data is opened; no pickle weights and no remote code are ever loaded.

Tiny models only (tests/ui_fixtures.py): a random T5 base, a "full" model and two LoRA adapters in a temporary store.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path

import pytest

from tests import ui_fixtures as uf
from tests.conftest import DIALOGUES
from workbench import app_service as svc
from workbench import paths
from workbench.app_service import CompareResult

SETTINGS = ["greedy", 64, 4, 0.7, 0.9, 0]  # decoding, max_new_tokens, num_beams, temperature, top_p, seed
MESSAGE_LIMIT = 2_000  # every error or refusal the app sends back is at most this long

# ------------------------------------------------------------------------------------------------ file-open audit

_OPENED: list[str] = []
_WATCHING = threading.Event()


def _audit(event: str, args) -> None:
    if event == "open" and _WATCHING.is_set() and args and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed; this one only records while a test watches


@pytest.fixture
def opened_files():
    """Every path the process (the app server runs in its threads) opens while the test runs."""
    _OPENED.clear()
    _WATCHING.set()
    yield _OPENED
    _WATCHING.clear()


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A DialogSum-style dataset outside the app's data and store: a user must never get it read."""
    folder = tmp_path_factory.mktemp("outside")
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text(json.dumps({"fname": "secret_0", "dialogue": "#Person1#: the secret",
                                                           "summary": "a secret"}) + "\n")
    return folder


# ------------------------------------------------------------------------------------------------ the app


wb, client = uf.app_fixtures("wb-abuse", concurrency=4)


def compare(client, dialogue, reference="", settings=SETTINGS):
    return client.predict(dialogue, reference, *settings, api_name="/compare")


def refused(call) -> str:
    """The message of a request the app refuses with an error (gradio validation or gr.Error)."""
    with pytest.raises(Exception) as err:
        call()
    message = str(err.value)
    assert 0 < len(message) <= MESSAGE_LIMIT, message[:300]
    assert "has not enabled verbose error reporting" not in message  # the user is told what was wrong
    return message


# ------------------------------------------------------------------------------------------------ dialogue text

HOSTILE_TEXT = {
    "html_js": '<script>window.__pwned=1</script><img src=x onerror="alert(1)"> #Person1#: hi',
    "markdown_links": "#Person1#: [click](javascript:alert(1)) ![x](http://evil.example/x.png) **bold** `code`",
    "template_and_format": "#Person1#: {{7*7}} ${7*7} %s%s%n {0.__class__} <%= 7*7 %>",
    "emoji_rtl": "#Person1#: 🙂👋🏽 שלום, מה שלומך?\n#Person2#: مرحبا! 你好 🙃",
    "control_binary": "#Person1#: hi\x00\x01\x02\x1b[31m\x7f\x9b there\u202e\ufeff\n#Person2#: ok",
    "path_like": "../../etc/passwd",
    "one_long_word": "a" * 19_000,
}


@pytest.mark.parametrize("name", list(HOSTILE_TEXT))
def test_hostile_dialogues_get_four_plain_text_summaries(client, name, opened_files):
    from workbench.ui import compare as compare_tab

    result = compare(client, HOSTILE_TEXT[name])
    assert result["ok"], result["message"]
    assert all(isinstance(e["text"], str) for e in result["models"].values())
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202e\ufeff]", result["prompt"])  # cleaned
    if name == "emoji_rtl":
        assert "שלום" in result["prompt"] and "🙂" in result["prompt"]  # kept, not mangled
    shown = CompareResult.from_dict(result)
    rendered = compare_tab.render(shown, [(e.label, s) for s, e in shown.models.items()])  # what the page shows:
    # HTML cards are escaped, summaries are text boxes
    html_parts = [rendered[0]] + rendered[1::3]
    assert not any("<script" in part or "<img" in part for part in html_parts)
    assert not any("passwd" in path for path in opened_files)


@pytest.mark.parametrize("text, expected", [
    ("", "empty"), ("   \n\t  \r\n ", "empty"), ("\x00\x01\x7f\u202e", "empty"),
    ("x" * 100_000, "limit is 20,000"), ("#Person1#: hi " * 10_000, "limit is 20,000"),
])
def test_empty_and_oversized_dialogues_are_refused_before_the_models(wb, client, monkeypatch, text, expected):
    calls = []
    monkeypatch.setattr(wb.models, "summarize", lambda *a, **k: calls.append(a))
    result = compare(client, text)
    assert not result["ok"] and expected in result["message"] and len(result["message"]) < 200
    assert calls == []


def test_reference_prompt_and_score_inputs_are_bounded(client):
    assert "limit" in compare(client, DIALOGUES[0][0], "r" * 100_000)["message"]
    assert "limit" in client.predict("t" * 100_000, api_name="/score")["message"]
    typed = "\n===\n".join(["#Person1#: a\nSummary: b"] * 50)
    result = client.predict(DIALOGUES[0][0], "", 0, "typed", 0, typed, "demo", 64, api_name="/prompt")
    assert not result["ok"] and "at most 3" in result["message"]
    result = client.predict("<b>x</b>\x00", "", 0, "typed", 0, "no summary here", "demo", 64, api_name="/prompt")
    assert not result["ok"] and "Summary:" in result["message"]
    scored = client.predict("🙂 <script>alert(1)</script> שלום", api_name="/score")
    assert scored["ok"] and 0 <= scored["toxicity"] <= 1


# ------------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("index, value, expected", [
    (1, -5, "less than minimum"), (1, 10**9, "greater than maximum"), (1, "abc", "'abc'"), (1, None, "None"),
    (2, 1000, "greater than maximum"), (3, -1.0, "less than minimum"), (3, "hot", "'hot'"),
    (4, 5.0, "greater than maximum"), (5, -1, "less than minimum"), (5, 2**40, "greater than maximum"),
    (0, "rm -rf /", "not in the list of choices"), (0, "<img src=x onerror=alert(1)>", "not in the list"),
])
def test_absurd_generation_settings_get_a_clear_refusal(wb, client, monkeypatch, index, value, expected):
    calls = []
    monkeypatch.setattr(wb.models, "summarize", lambda *a, **k: calls.append(a))
    settings = list(SETTINGS)
    settings[index] = value
    message = refused(lambda: compare(client, DIALOGUES[0][0], settings=settings))
    assert expected in message
    assert calls == []


def raw_call(url: str, api_name: str, body: str) -> tuple[str, str]:
    """POST a hand-written JSON body (NaN, lone surrogates: what gradio_client refuses to send) to the app's HTTP
    API; returns (event, data) of the final server-sent event."""
    import httpx

    with httpx.Client(timeout=60) as http:
        posted = http.post(f"{url}gradio_api/call/{api_name}", content=body,
                           headers={"Content-Type": "application/json"})
        assert posted.status_code == 200, posted.text[:300]
        event_id = posted.json()["event_id"]
        stream = http.get(f"{url}gradio_api/call/{api_name}/{event_id}").text
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream)
    assert events, stream[:300]
    return events[-1]


def test_raw_http_nan_infinity_and_lone_surrogates(client):
    url = client.src
    event, data = raw_call(url, "compare", '{"data": ["#Person1#: hi", "", "greedy", 64, 4, NaN, 0.9, 0]}')
    assert event == "complete" and "temperature must be between" in data  # refused by the service, in words
    event, data = raw_call(url, "compare", '{"data": ["#Person1#: hi", "", "greedy", NaN, 4, 0.7, 0.9, 0]}')
    assert event == "complete" and "max_new_tokens must be between" in data
    event, data = raw_call(url, "compare", '{"data": ["#Person1#: hi", "", "greedy", 64, 4, 0.7, 0.9, NaN]}')
    assert event == "error" and "Seed (sampling): must be a finite number (got nan)" in data and len(data) < 300
    event, data = raw_call(url, "compare", '{"data": ["#Person1#: hi", "", "greedy", 64, 4, Infinity, 0.9, 0]}')
    assert event == "error" and "greater than maximum" in data
    event, data = raw_call(url, "compare", '{"data": ["#Person1#: a\\ud800b \\udfff", "", "greedy", 16, 4, 0.7, 0.9, 0]}')
    assert event == "complete" and json.loads(data)[0]["ok"]  # the lone surrogates are dropped, the rest answered
    event, data = raw_call(url, "score", '{"data": ["\\ud83d"]}')
    assert event == "complete" and "empty" in json.loads(data)[0]["message"]


# ------------------------------------------------------------------------------------------------ batch toxicity


@pytest.mark.parametrize("n, expected", [(10**9, "greater than maximum"), (0, "less than minimum"),
                                         (-3, "less than minimum"), ("all of them", "'all of them'")])
def test_huge_or_absurd_sample_sizes_are_refused(client, n, expected):
    assert expected in refused(lambda: client.predict(n, 0, "demo", api_name="/toxicity_sample"))


def test_largest_allowed_sample_is_capped_by_the_split(client):
    message, _, stats, _ = client.predict(200, 0, "demo", api_name="/toxicity_sample")
    assert "The split has only 10 dialogues" in message and all(row[1] == 10 for row in stats["data"])


# ------------------------------------------------------------------------------------------------ paths and ids


def test_paths_and_ids_typed_into_choices_are_refused_and_nothing_outside_is_read(wb, client, outside,
                                                                                    opened_files):
    for dataset in ("../../etc/passwd", str(outside), "../outside", "/etc", "dialogsum-local/../../../etc"):
        assert "not in the list of choices" in refused(
            lambda: client.predict(3, 0, dataset, api_name="/toxicity_sample"))
        assert "not in the list of choices" in refused(
            lambda: client.predict("#Person1#: hi", "", 1, "dataset", 0, "", dataset, 64, api_name="/prompt"))
        assert "not in the list of choices" in refused(
            lambda: client.predict(dataset, api_name="/compare_examples"))
        # one layer down, the service refuses them too: datasets are a fixed list, never a path
        assert not wb.service.toxicity_sample(3, 0, dataset)["ok"]
        with pytest.raises(svc.InputError, match="Unknown dataset"):
            wb.service.rows(dataset, "test")
    for example_id in ("../../etc/passwd", "/etc/passwd", str(outside / "test.jsonl"), "train_0/../secret_0"):
        assert "not in the list of choices" in refused(
            lambda: client.predict("demo", example_id, api_name="/compare_example"))
        with pytest.raises(svc.InputError, match="no example"):
            wb.service.example("demo", example_id)
    assert "#Person1#" in client.predict("demo", "test_0", api_name="/compare_example")[0]  # real ids still work
    assert not any(str(outside) in path or "passwd" in path for path in opened_files), opened_files


def test_the_api_takes_no_files_model_ids_or_paths(client):
    api = client.view_api(print_info=False, return_format="dict")
    components = {p["component"] for endpoint in api["named_endpoints"].values() for p in endpoint["parameters"]}
    assert components <= {"Textbox", "Slider", "Number", "Radio", "Checkboxgroup", "Dropdown"}, components
    labels = " ".join(str(p.get("label")).lower() for e in api["named_endpoints"].values() for p in e["parameters"])
    assert not re.search(r"\b(model|path|file|folder|url|revision)\b", labels), labels


def test_refusals_quoting_user_input_are_escaped_in_the_page(wb):
    from workbench.ui import common, compare as compare_tab, toxicity as toxicity_tab

    evil = '<img src=x onerror="window.__pwned=1">'
    compared = wb.service.compare(DIALOGUES[0][0], decoding=evil).as_dict()
    for result in (wb.service.toxicity_sample(3, 0, evil), compared,
                   wb.service.prompt("#Person1#: hi", shot_source=evil)):
        assert not result["ok"] and len(result["message"]) < 300
        page = common.notice_html(result) + toxicity_tab.score_html(result) + compare_tab.notice_of(
            CompareResult.refused(result["message"]))
        assert "<img" not in page and "&lt;img" in page


def test_reload_flood_reloads_once(wb, client, monkeypatch):
    calls = []
    original = wb.models.reload
    monkeypatch.setattr(wb.models, "reload", lambda: calls.append(1) or original())
    pages = [client.predict(api_name="/refresh") for _ in range(4)]
    assert len(calls) == 1
    assert all(page.count("wb-slot-ok") == 4 for page in pages)
    assert "reloaded just now" in pages[-1]


def test_request_flood_beyond_the_queue_is_rejected_cleanly(wb):
    from gradio_client import Client

    with uf.launched(wb.service, concurrency=1, max_queue=2) as (_, url):
        client = Client(url, verbose=False)
        jobs = [client.submit(DIALOGUES[i % 4][0], "", *SETTINGS, api_name="/compare") for i in range(12)]
        outcomes = []
        for job in jobs:
            try:
                outcomes.append("ok" if job.result(timeout=120)["ok"] else "refused")
            except Exception as err:  # noqa: BLE001
                outcomes.append("queue full" if "queue is full" in str(err).lower() else f"error: {err}")
    assert set(outcomes) <= {"ok", "queue full"}, outcomes
    assert "ok" in outcomes and "queue full" in outcomes


# ------------------------------------------------------------------------------------------------ weights and code


def test_pickle_weights_and_remote_code_are_never_loaded(wb, tmp_path, monkeypatch, tiny_model_dir):
    import torch

    from workbench.modelset import ModelSet, ModelSetConfig

    store_dir = wb.store_dir
    canary = tmp_path / "remote-code-ran"
    evil = f"import pathlib\npathlib.Path({str(canary)!r}).write_text('ran')\n".encode()
    pickled = tmp_path / "pytorch_model.bin"
    torch.save({"shared.weight": torch.zeros(2, 2)}, pickled)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    remote = {**config, "auto_map": {"AutoModelForSeq2SeqLM": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}}
    uf.handmade_revision(store_dir, "abuse/pickle-only", {"config.json": tiny_model_dir / "config.json",
                                                       "pytorch_model.bin": pickled})
    uf.handmade_revision(store_dir, "abuse/pickle-too", {**{p.name: p for p in tiny_model_dir.iterdir()},
                                                      "pytorch_model.bin": pickled})
    uf.handmade_revision(store_dir, "abuse/remote-code", {**{p.name: p for p in tiny_model_dir.iterdir()},
                                                       "config.json": json.dumps(remote).encode(),
                                                       "evil.py": evil})
    cfg = uf.write_config(tmp_path / "models.yaml", base={"ref": "abuse/remote-code"},
                          full={"ref": "abuse/pickle-only"}, lora={"ref": "abuse/pickle-too"})
    models = ModelSet(ModelSetConfig.load(cfg), device="cpu")
    assert "pickle" in models.status["full"].error and "pytorch_model.bin" in models.status["full"].error
    assert "pickle" in models.status["lora"].error
    assert not canary.exists()  # the code in the revision never ran; the model loaded as a plain T5
    assert models.status["base"].ok and type(models.base_model).__name__ != "EvilModel"


SHIPPED = [p for folder in ("workbench", "trainers", "spaces") for p in (paths.REPO_ROOT / folder).rglob("*.py")]


def _call_text(text: str, open_paren: int) -> str:
    """The argument text of the call whose "(" is at `open_paren`."""
    depth = 0
    for i in range(open_paren, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_paren + 1: i]
    raise AssertionError("unbalanced parentheses")


def test_source_never_enables_remote_code_or_unpickling():
    assert len(SHIPPED) > 20
    for path in SHIPPED:
        text = path.read_text()
        where = path.relative_to(paths.REPO_ROOT)
        for value in re.findall(r"trust_remote_code\s*=\s*([^,)\s]+)", text):
            assert value == "False", f"{where}: trust_remote_code={value}"
        assert not re.search(r"^\s*(import|from) (pickle|dill|joblib|cloudpickle)\b", text, re.M), where
        for match in re.finditer(r"torch\.load\(", text):
            assert "weights_only=True" in _call_text(text, match.end() - 1), f"{where}: torch.load without weights_only"
        for match in re.finditer(r"(\w+)\.from_pretrained\(", text):
            args = _call_text(text, match.end() - 1)
            if "Tokenizer" in match.group(1):
                assert "trust_remote_code=False" in args, f"{where}: {match.group(0)}{args})"
            else:
                assert "use_safetensors=True" in args, f"{where}: {match.group(0)}{args})"


# ------------------------------------------------------------------------------------------------ API shapes


@pytest.mark.parametrize("value, kind", [("5", "a number"), ("[1, 2]", "a list"), ('{"a": 1}', "an object"),
                                         ("true", "true/false")])
def test_a_number_list_or_object_sent_as_the_dialogue_is_refused(wb, client, monkeypatch, value, kind):
    calls = []
    monkeypatch.setattr(wb.models, "summarize", lambda *a, **k: calls.append(a))
    event, data = raw_call(client.src, "compare", f'{{"data": [{value}, "", "greedy", 64, 4, 0.7, 0.9, 0]}}')
    assert event == "error" and f"must be text, not {kind}" in data, data
    event, data = raw_call(client.src, "score", f'{{"data": [{value}]}}')
    assert event == "error" and f"must be text, not {kind}" in data, data
    assert calls == []


def test_a_call_with_missing_arguments_gets_a_sentence_and_one_log_line(client, caplog, capfd):
    import logging

    caplog.set_level(logging.WARNING, logger="workbench.ui")
    event, data = raw_call(client.src, "compare", '{"data": ["#Person1#: hi"]}')
    assert event == "error" and "takes 8 inputs" in data and "the request sent 1" in data, data
    assert "object at 0x" not in data and "<gradio" not in data and "Wanted inputs" not in data
    assert any("rejected call" in r.getMessage() for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err


def test_a_rejected_choice_is_logged_as_one_line_without_the_choices(client, caplog, capfd):
    import logging

    caplog.set_level(logging.WARNING, logger="workbench.ui")
    message = refused(lambda: client.predict("demo", "no-such-example", api_name="/compare_example"))
    assert "not in the list of choices" in message and "test_1" not in message and "<class" not in message
    lines = [r.getMessage() for r in caplog.records if "rejected input" in r.getMessage()]
    assert lines and all("\n" not in line and "test_1" not in line for line in lines)
    assert "Traceback" not in capfd.readouterr().err


def test_invisible_format_characters_are_removed_through_the_api(client):
    result = compare(client, "#Person1#: hi\u200e there\u200f \u2066x\u2069\u200b\n#Person2#: ok\u00ad")
    assert result["ok"] and not re.search("[\u200b-\u200f\u2066-\u2069\u00ad]", result["prompt"])

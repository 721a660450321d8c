"""The app end to end through gradio_client (a launched server), plus the pure functions of app_service and charts.

Tiny models only: a random T5 base, a separate "full" model and two different LoRA adapters in a temporary store.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses

import pandas as pd
import pytest

from tests import ui_fixtures as uf
from tests.conftest import DIALOGUES
from workbench import app_service as svc
from workbench import prompts
from workbench.app_service import CompareResult, SlotOutput
from workbench.generation import GenerationSettings, generate
from workbench.modelset import LABELS, SLOTS

EXTRA = uf.DIALOGUES_EXTRA
COMPARE_DEFAULTS = dict(decoding="greedy", max_new_tokens=64, num_beams=4, temperature=0.7, top_p=0.9, seed=0)


def call_compare(client, dialogue, reference=""):
    d = COMPARE_DEFAULTS
    return client.predict(dialogue, reference, d["decoding"], d["max_new_tokens"], d["num_beams"], d["temperature"],
                          d["top_p"], d["seed"], api_name="/compare")


# ------------------------------------------------------------------------------------------------ fixtures


wb, client = uf.app_fixtures("wb", concurrency=8)


@pytest.fixture(scope="module")
def alone(wb):
    """Each slot's model loaded on its own (no shared base, no mixed batch): dialogue -> {slot: greedy summary}."""
    from peft import PeftModel

    from workbench import modeling, store

    def load(ref):
        folder = store.resolve(ref)
        return modeling.load_model(folder, dtype="fp32", device="cpu"), modeling.load_tokenizer(folder)

    models = {"base": load(uf.REPOS["base"]), "full": load(uf.REPOS["full"])}
    for slot in ("lora", "ppo"):
        base, tok = load(uf.REPOS["base"])
        models[slot] = (PeftModel.from_pretrained(base, str(store.resolve(uf.REPOS[slot]))).eval(), tok)

    def run(dialogue: str) -> dict[str, str]:
        prompt = prompts.zero_shot(dialogue)
        return {slot: generate(m, tok, [prompt], GenerationSettings())[0] for slot, (m, tok) in models.items()}

    return run


# ------------------------------------------------------------------------------------------------ compare


def test_compare_equals_each_model_alone(client, alone):
    differ = False
    for dialogue, reference in DIALOGUES[:2]:
        result = call_compare(client, dialogue, reference)
        assert result["ok"], result
        expected = alone(dialogue)
        for slot, text in expected.items():
            entry = result["models"][slot]
            assert entry["available"] and entry["text"] == text, slot
            assert 0.0 <= entry["toxicity"] <= 1.0
            assert set(entry["rouge"]) == {"rouge1", "rouge2", "rougeL"}
            assert all(isinstance(tok, str) and isinstance(m, bool) for tok, m in entry["overlap"])
            assert entry["latency_s"] >= 0
        differ |= len({expected["base"], expected["lora"], expected["ppo"]}) == 3
    assert differ, "the test adapters must change the output, or cross-talk would go unnoticed"


def test_batch_path_gives_each_model_its_own_outputs(wb, alone):
    """generate_slots (the Toxicity tab's sample run) serves base/LoRA/PPO in one mixed batch: each output must be
    what that model gives alone, in the prompts' order."""
    dialogues = [d for d, _ in DIALOGUES] + EXTRA[:3]
    got = wb.models.generate_slots(["base", "full", "lora", "ppo"], [prompts.zero_shot(d) for d in dialogues],
                                   GenerationSettings(), batch_size=2)
    for i, dialogue in enumerate(dialogues):
        assert {slot: outputs[i] for slot, outputs in got.items()} == alone(dialogue)


def test_eight_requests_in_flight_no_crosstalk(client, alone):
    dialogues = [d for d, _ in DIALOGUES] + EXTRA[:4]
    expected = {d: alone(d) for d in dialogues}
    jobs = [client.submit(d, "", *COMPARE_DEFAULTS.values(), api_name="/compare") for d in dialogues]
    for dialogue, job in zip(dialogues, jobs):
        result = job.result(timeout=120)
        assert result["ok"], result
        got = {slot: e["text"] for slot, e in result["models"].items()}
        assert got == expected[dialogue]


def test_threads_each_with_own_client_match_single_user(wb, client, alone):
    from gradio_client import Client

    url = client.src
    dialogues = EXTRA[:4] + [d for d, _ in DIALOGUES]

    def one(dialogue):
        return call_compare(Client(url, verbose=False), dialogue)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, dialogues))
    for dialogue, result in zip(dialogues, results):
        assert {s: e["text"] for s, e in result["models"].items()} == alone(dialogue)


def test_compare_refuses_empty_and_overlong_input(wb, client, monkeypatch):
    calls = []
    monkeypatch.setattr(wb.models, "summarize", lambda *a, **k: calls.append(a))  # must never be reached
    for empty in ("", "   \n\t  ", "\x00\x01\x7f"):
        result = call_compare(client, empty)
        assert not result["ok"] and "empty" in result["message"]
    result = call_compare(client, "x" * (svc.MAX_DIALOGUE_CHARS + 1))
    assert not result["ok"] and "20,000" in result["message"] and "limit" in result["message"]
    result = call_compare(client, DIALOGUES[0][0], "r" * (svc.MAX_REFERENCE_CHARS + 1))
    assert not result["ok"] and "reference" in result["message"].lower()
    assert calls == []


def test_compare_truncates_long_dialogue_with_notice(client):
    turn = "#Person1#: I would like to book a table for two at seven, please.\n#Person2#: Certainly, what name?\n"
    long_dialogue = turn * 60  # ~1,400 tokens, well over the 512-token limit but under the character limit
    result = call_compare(client, long_dialogue)
    assert result["ok"] and result["truncated"]
    assert result["input_tokens"] <= result["max_input_tokens"] < result["input_tokens_before_truncation"]
    assert "truncated" in result["message"]
    assert result["prompt"].endswith("Summary: ")  # the cue survives: the dialogue is cut, not the prompt
    assert all(e["text"] is not None for e in result["models"].values())


def test_compare_settings_are_bounded(client):
    d = dict(COMPARE_DEFAULTS)
    result = client.predict(DIALOGUES[0][0], "", "sampling", 64, 4, 0.7, 0.9, 7, api_name="/compare")
    again = client.predict(DIALOGUES[0][0], "", "sampling", 64, 4, 0.7, 0.9, 7, api_name="/compare")
    assert result["ok"] and result["settings"]["do_sample"] and result["seed"] == 7
    assert {s: e["text"] for s, e in result["models"].items()} == {s: e["text"] for s, e in again["models"].items()}
    beam = client.predict(DIALOGUES[0][0], "", "beam search", 16, 3, 0.7, 0.9, 0, api_name="/compare")
    assert beam["ok"] and beam["settings"]["num_beams"] == 3
    with pytest.raises(Exception):  # outside the slider's range: refused before reaching the models
        client.predict(DIALOGUES[0][0], "", d["decoding"], 5000, 4, 0.7, 0.9, 0, api_name="/compare")


# ------------------------------------------------------------------------------------------------ prompt / score


def test_prompt_endpoint_zero_and_few_shot(wb, client, alone):
    dialogue, reference = DIALOGUES[1]
    zero = client.predict(dialogue, reference, 0, "dataset", 0, "", "demo", 64, api_name="/prompt")
    assert zero["ok"] and zero["style"] == "instruction" and zero["prompt"] == prompts.zero_shot(dialogue)
    assert zero["output"] == alone(dialogue)["base"]
    assert zero["prompt_tokens"] <= zero["max_input_tokens"] and not zero["truncated"]
    assert set(zero["rouge"]) == {"rouge1", "rouge2", "rougeL"}

    two = client.predict(dialogue, "", 2, "dataset", 3, "", "demo", 64, api_name="/prompt")
    assert two["ok"] and two["style"] == "blocks" and len(two["shots"]) == 2 and two["rouge"] is None
    assert two["prompt"] == prompts.few_shot(dialogue, [(s["dialogue"], s["summary"]) for s in two["shots"]])
    assert all(s["dialogue"] != dialogue for s in two["shots"])

    typed = "#Person1#: Hi.\n#Person2#: Hello.\nSummary: They greet.\n===\n#Person1#: Bye.\nSummary: A goodbye."
    result = client.predict(dialogue, "", 0, "typed", 0, typed, "demo", 64, api_name="/prompt")
    assert result["ok"] and len(result["shots"]) == 2
    assert result["prompt"] == prompts.few_shot(dialogue, [("#Person1#: Hi.\n#Person2#: Hello.", "They greet."),
                                                           ("#Person1#: Bye.", "A goodbye.")])


def test_prompt_warns_when_truncated(client):
    long_shot = "#Person1#: " + "we talk about the weather and the trains and the news " * 40
    typed = "\n===\n".join(f"{long_shot}\nSummary: a long chat {i}." for i in range(3))
    result = client.predict(DIALOGUES[0][0], "", 3, "typed", 0, typed, "demo", 16, api_name="/prompt")
    assert result["ok"] and result["truncated"] and result["prompt_tokens"] > result["max_input_tokens"]
    assert "cut off" in result["message"] and result["dropped_text"]
    assert result["prompt"].endswith(result["dropped_text"])


def test_prompt_refuses_bad_input(client):
    assert "empty" in client.predict(" ", "", 0, "dataset", 0, "", "demo", 64, api_name="/prompt")["message"]
    bad = client.predict("#Person1#: Hi.", "", 0, "typed", 0, "no summary line here", "demo", 64, api_name="/prompt")
    assert not bad["ok"] and "Summary:" in bad["message"]


def test_score_endpoint(client):
    toxic = client.predict("You are a stupid idiot and I hate you", api_name="/score")
    calm = client.predict("They agree to meet at 3:30 at the gym.", api_name="/score")
    assert toxic["ok"] and toxic["toxicity"] > 0.5 and toxic["label"] == "toxic"
    assert calm["ok"] and calm["toxicity"] < 0.5 and calm["scorer"]
    assert not client.predict("  ", api_name="/score")["ok"]
    assert "limit" in client.predict("a" * (svc.MAX_SCORE_CHARS + 1), api_name="/score")["message"]


def test_toxicity_sample_and_dashboard_endpoints(client):
    message, plot, stats, top = client.predict(3, 0, "demo", api_name="/toxicity_sample")
    assert "3 dialogues" in message
    assert len(stats["data"]) == 4 and len(top["data"]) == 10
    outputs = client.predict(None, api_name="/dashboard")
    assert "4 measured run(s)" in outputs[0]
    assert len(outputs[7]["data"]) == 4  # the runs table
    assert "No preference-optimisation run" in outputs[8]  # one line, no chart: the seeded results have none


def test_refresh_and_status_endpoints(client):
    html = client.predict(api_name="/refresh")
    assert html.count("wb-slot-ok") == 4


def test_example_endpoint_fills_dialogue_and_reference(client, wb):
    row = wb.service.rows("demo", "test")[0]
    dialogue, reference = client.predict("demo", row["fname"], api_name="/compare_example")
    assert dialogue == row["dialogue"] and reference == row["summary"]


# ------------------------------------------------------------------------------------------------ unavailable slot


def test_missing_slot_is_unavailable_while_others_work(wb, tmp_path):
    from workbench.app_service import WorkbenchService
    from workbench.modelset import ModelSet, ModelSetConfig
    from workbench.ui import compare

    config = uf.write_config(tmp_path / "broken.yaml", ppo={"ref": "test/does-not-exist"})
    service = WorkbenchService(ModelSet(ModelSetConfig.load(config), device="cpu"), results_dir=wb.results_dir)
    assert [row["ok"] for row in service.status()] == [True, True, True, False]
    result = service.compare(DIALOGUES[0][0])
    assert result.ok and result.slots == ["base", "full", "lora", "ppo"]
    assert result.models["ppo"].available is False and result.models["ppo"].error
    assert all(result.models[s].text is not None for s in ("base", "full", "lora"))
    rendered = compare.render(result, service.slot_choices())
    assert "Unavailable:" in rendered[1 + 3 * 3] and rendered[2 + 3 * 3].startswith("Unavailable:")
    assert result.as_dict()["models"]["ppo"]["available"] is False  # what the API returns: the same, as JSON
    assert svc.CompareResult.from_dict(result.as_dict()) == result


# ------------------------------------------------------------------------------------------------ pure functions


def test_clean_text():
    assert svc.clean_text("  a\x00b\r\nc\td\u202e ", field="x", limit=100) == "ab\nc\td"
    # invisible format characters (category Cf: LRM, RLM, zero-width space, soft hyphen, word joiner) go too;
    # the zero-width joiner inside an emoji sequence stays
    assert svc.clean_text("a\u200eb\u200fc\u200bd\u00ade\u2060f", field="x", limit=100) == "abcdef"
    assert svc.clean_text("👩\u200d💻", field="x", limit=100) == "👩\u200d💻"
    for value, kind in ((5, "a number"), ([1, 2], "a list"), ({"a": 1}, "an object")):
        with pytest.raises(svc.InputError, match=f"^x must be text, not {kind}\\.$"):
            svc.clean_text(value, field="x", limit=100)
    with pytest.raises(svc.InputError, match="empty"):
        svc.clean_text("\x01 \n", field="x", limit=10)
    with pytest.raises(svc.InputError, match="limit is 5"):
        svc.clean_text("abcdef", field="x", limit=5)
    assert svc.clean_text(None, field="x", limit=5, required=False) == ""


def test_parsers_and_settings():
    assert svc.parse_references("one\n---\ntwo\n") == ["one", "two"]
    assert svc.parse_shots("#P1#: a\nSummary: s\n===\n#P1#: b\nsummary: t") == [("#P1#: a", "s"), ("#P1#: b", "t")]
    with pytest.raises(svc.InputError, match="at most 3"):
        svc.parse_shots("\n===\n".join(["d\nSummary: s"] * 4))
    assert svc.generation_settings("greedy", 32) == GenerationSettings(max_new_tokens=32)
    assert svc.generation_settings("sampling", 10, 4, 0.5, 0.8).do_sample
    for bad in (dict(max_new_tokens=0), dict(max_new_tokens="x"), dict(temperature=float("nan")),
                dict(decoding="magic"), dict(num_beams=2.5)):
        with pytest.raises(svc.InputError):
            svc.generation_settings(**{"decoding": "beam search", **bad})


def test_fit_dialogue_keeps_the_cue(tiny_tokenizer):
    from workbench.generation import count_tokens

    dialogue = "#Person1#: hello there my friend\n" * 200
    kept, before, after = svc.fit_dialogue(tiny_tokenizer, dialogue, 64)
    assert before > 64 >= after == count_tokens(tiny_tokenizer, prompts.zero_shot(kept))
    assert dialogue.startswith(kept) and len(kept) > 20
    assert svc.fit_dialogue(tiny_tokenizer, "#Person1#: hi", 64)[0] == "#Person1#: hi"


def test_draw_shots_is_seeded_and_skips_the_target(wb):
    rows = wb.service.rows("demo", "train")
    target = rows[0]["dialogue"]
    a = wb.service.draw_shots("demo", 2, 5, exclude=target)
    assert a == wb.service.draw_shots("demo", 2, 5, exclude=target)
    assert all(s["dialogue"] != target for s in a)
    with pytest.raises(svc.InputError):
        wb.service.draw_shots("../etc", 1, 0)


def test_dashboard_data_from_seeded_results(wb):
    d = wb.service.dashboard()
    assert d.dataset == "demo / test" and d.datasets == ["demo / test"]
    assert len(d.runs) == 4 and {"commit", "date", "run id", "model", "method", "n"} <= set(d.runs.columns)
    assert set(d.rouge["method"]) == {"base", "full", "lora", "ppo"} and len(d.rouge) == 16
    lora_r1 = d.improvement[(d.improvement["model"] == "LoRA") & (d.improvement["rouge_type"] == "rouge1")].iloc[0]
    assert lora_r1["points"] == pytest.approx(100 * (0.37 - 0.20))  # absolute ROUGE points, not a percentage
    # no outputs files: the CI comes from the two runs' own CIs (half-widths 3 points each, added in quadrature)
    assert lora_r1["ci"] == "unpaired" and lora_r1["ci_high"] - lora_r1["points"] == pytest.approx(3 * 2 ** 0.5)
    assert set(d.params["method"]) == {"full", "lora", "ppo"} and d.base_rouge1 == pytest.approx(0.20)
    assert "LoRA (PPO start, same run)" in set(d.toxicity["model"]) and "-0.0400" in d.toxicity_note
    assert {"loss", "reward_mean", "kl", "toxicity_mean"} == set(d.curves["metric"])
    assert list(d.reference["rouge1"]) == [0.233, 0.422, 0.408] and "source" not in d.reference  # stated once, above


def test_dashboard_empty_results_is_friendly(tmp_path):
    d = svc.dashboard_data([], results_dir=tmp_path)
    assert "No runs yet" in d.message and "python -m trainers.build_demo" in d.message
    assert d.runs.empty and d.dataset is None


def test_read_log_stays_inside_results(tmp_path):
    (tmp_path / "secret.jsonl").write_text('{"step": 1, "loss": 1}\n')
    inner = tmp_path / "results"
    (inner / "logs").mkdir(parents=True)
    (inner / "logs" / "a.jsonl").write_text('{"step": 1, "loss": 2}\nnot json\n{"no_step": 1}\n')
    assert svc.read_log(inner, "logs/a.jsonl") == [{"step": 1, "loss": 2}]
    assert svc.read_log(inner, "../secret.jsonl") == []
    assert svc.read_log(inner, str(tmp_path / "secret.jsonl")) == []


def test_charts_build_from_frames(wb):
    from workbench.ui import charts

    d = wb.service.dashboard()
    figures = [charts.rouge_chart(d.rouge), charts.improvement_chart(d.improvement),
               charts.params_chart(d.params, d.base_rouge1), charts.toxicity_chart(d.toxicity, d.toxicity_note),
               charts.curves_chart(d.curves), charts.reference_chart(d.reference)]
    # curves: the LoRA loss, and PPO reward, KL and rollout toxicity from the seeded logs
    assert [len(f.data) for f in figures] == [4, 3, 3, 5, 4, 1]
    assert figures[2].layout.xaxis.type == "log"
    assert figures[0].data[0].error_y.array is not None
    for build in (charts.rouge_chart, charts.improvement_chart, charts.params_chart, charts.toxicity_chart,
                  charts.curves_chart, charts.toxicity_distribution):
        empty = build(pd.DataFrame())
        assert len(empty.data) == 0 and empty.layout.annotations
    records = pd.DataFrame({"model": ["LoRA", "LoRA"], "slot": ["lora"] * 2, "fname": ["a", "b"],
                            "toxicity": [0.1, 0.9], "summary": ["<script>x</script>", "fine"]})
    fig = charts.toxicity_distribution(records, svc.toxicity_stats(records))
    assert "<script>" not in str(fig.data[0].customdata) and "&lt;script&gt;" in str(fig.data[0].customdata)


def test_rendering_escapes_model_text():
    from workbench.ui import common, compare, prompting

    evil = '<img src=x onerror="window.__pwned=1">'
    entry = SlotOutput("lora", evil, model=evil, revision=evil, available=False, error=evil)
    assert "<img" not in compare.card_html(evil, entry)
    assert "<img" not in common.notice_html({"ok": False, "message": evil})
    ok = {"ok": True, "prompt_tokens": 3, "max_input_tokens": 512, "shots": [{"fname": evil}], "latency_s": 0.1,
          "toxicity": 0.2, "rouge": None}
    assert "<img" not in prompting.tokens_html(ok) + prompting.metrics_html(ok)


def test_cli_arguments():
    from workbench.__main__ import parse_args

    args = parse_args(["--models", "x.yaml", "--port", "7999", "--share", "no"])
    assert (args.models, args.port, args.share, args.host) == ("x.yaml", 7999, False, "127.0.0.1")
    with pytest.raises(SystemExit):
        parse_args(["--share", "maybe"])


def test_dashboard_renders_every_dataset_of_the_committed_results_including_the_reward_run():
    from workbench import app_service, paths, results

    runs = results.list_runs(paths.REPO_ROOT / "results")
    keys = {app_service.dataset_key(r) for r in runs}
    assert any(r["method"] == "reward" for r in runs) and len(keys) >= 2
    for key in keys:
        data = app_service.dashboard_data(runs, key, results_dir=paths.REPO_ROOT / "results")
        assert len(data.runs) == len(runs)  # the provenance table lists every run whatever the dataset


def test_dashboard_says_when_a_run_was_scored_on_rows_held_out_of_its_training_file():
    from workbench import app_service, paths, results

    run = next(r for r in results.list_runs(paths.REPO_ROOT / "results") if r["method"] == "lora")
    held = {**run, "run_id": "lora-held", "dataset": {**run["dataset"], "id": "mine.jsonl", "held_out": True,
                                                      "note": "held out 24 of 240 dialogues (10%, seed 0)"}}
    assert app_service.dataset_key(held) == "mine.jsonl / test (held out of the training data)"
    assert app_service.dataset_key(run) == "demo / test"
    table = app_service.runs_table([run, held])
    assert set(table["split"]) == {"test", "test (held out)"}


# ------------------------------------------------------------------------------------------------ UI polish


def test_word_highlight_keeps_punctuation_and_hides_without_a_reference():
    from workbench import scoring
    from workbench.ui import common, compare

    pieces = [[t, m] for t, m in scoring.word_overlap("Hello, world! It's #Person1#.", "hello person1")]
    value = common.highlight_value(pieces)
    assert "".join(t for t, _ in value) == "Hello, world! It's #Person1#."  # no space before the punctuation
    assert [t for t, label in value if label] == ["Hello", "#Person1#"]
    entry = SlotOutput("lora", "LoRA", model="m", revision="r", available=True, text="Hello", latency_s=0.1,
                       toxicity=0.1)
    slots = [(LABELS[s], s) for s in SLOTS]
    rendered = compare.render(CompareResult(True, "", models={"lora": entry}), slots)
    boxes = rendered[3::3]
    assert len(boxes) == 4 and not any(b.visible for b in boxes)  # no reference: no "Words also in the reference"
    with_ref = compare.render(CompareResult(True, "", models={"lora": dataclasses.replace(entry, overlap=pieces)}),
                              slots)
    assert with_ref[9].visible and not with_ref[3].visible  # the LoRA box only


def test_decoding_controls_follow_the_decoding():
    from workbench.ui import compare

    def interactive(kind):
        return [c.interactive for c in compare.decoding_controls(kind)]  # beams, temperature, top-p, seed

    assert interactive("greedy") == [False, False, False, False]
    assert interactive("beam search") == [True, False, False, False]
    assert interactive("sampling") == [False, True, True, True]
    from workbench.ui import prompting

    typed, shots, seed = prompting.shot_controls("typed")  # the typed box takes the place of count and seed
    assert typed.visible and not shots.visible and not seed.visible
    assert [c.visible for c in prompting.shot_controls("dataset")] == [False, True, True]


def test_cards_of_every_slot_have_the_same_lines():
    """A card's lines are fixed (title, model, family, badges), so that the four cards align whatever the names."""
    from workbench.ui import compare

    entry = SlotOutput("full", "Full fine-tune", model="demo/flan-t5-demo-full", revision="r", available=True,
                       latency_s=0.1, toxicity=0.1)
    short = compare.card_html("Full fine-tune", entry)
    long = compare.card_html("ORPO-tuned (LoRA)", dataclasses.replace(entry, model="a/" + "very-long-name-" * 5,
                                                                      family="fallback: x"))
    assert short.count("<div") == long.count("<div") == 5


def test_empty_typed_shots_say_the_run_was_zero_shot(wb):
    result = wb.service.prompt(DIALOGUES[0][0], shot_source="typed", custom_shots="  \n ")
    assert result["ok"] and result["style"] == "instruction" and result["shots"] == []
    assert result["prompt"] == prompts.zero_shot(DIALOGUES[0][0])
    assert result["notices"] == ["The typed shots are empty, so the run was zero-shot (the instruction prompt)."]
    assert wb.service.prompt(DIALOGUES[0][0], shots=0)["notices"] == []  # chosen zero-shot: nothing to say


def test_toxicity_progress_count_and_fraction_agree(wb):
    import re

    seen = []
    result = wb.service.toxicity_sample(10, 0, "demo", batch_size=4, progress=lambda f, text: seen.append((f, text)))
    assert result["ok"] and len(seen) == 4
    for fraction, text in seen:
        done, total = map(int, re.match(r"(\d+) of (\d+) dialogues", text).groups())
        assert fraction == pytest.approx(done / total)
    assert [f for f, _ in seen] == pytest.approx([0, 0.4, 0.8, 1.0])


def test_improvement_is_paired_when_the_outputs_are_there(tmp_path):
    import json

    from workbench import dashboard

    def run(method, values):
        (tmp_path / f"{method}.jsonl").write_text("".join(
            json.dumps({"fname": f"t{i}", "rouge1": v}) + "\n" for i, v in enumerate(values)))
        e = {"mean": sum(values) / len(values), "ci_low": 0.0, "ci_high": 1.0, "n": len(values)}
        return {"run_id": method, "method": method, "metrics": {"rouge1": e}, "outputs_file": f"{method}.jsonl",
                "dataset": {"id": "demo", "split": "test"}}

    base, lora = run("base", [0.1, 0.2, 0.3, 0.4]), run("lora", [0.2, 0.3, 0.4, 0.5])
    [row] = dashboard.improvement_frame([base, lora], tmp_path).to_dict("records")
    assert row["ci"] == "paired" and row["points"] == pytest.approx(10.0)
    assert row["ci_low"] == pytest.approx(10.0) and row["ci_high"] == pytest.approx(10.0)  # the same gain on each
    escaped = {**lora, "outputs_file": "../lora.jsonl"}  # never read outside the results folder
    assert dashboard.improvement_frame([base, escaped], tmp_path / "sub").iloc[0]["ci"] == "unpaired"


def test_provenance_table_formats_numbers_alike(wb):
    table = wb.service.dashboard().runs
    assert all(len(v.split(".")[1]) == 4 for v in table["ROUGE-1"])  # 0.2000, not 0.2
    assert set(table["trainable"]) == {"1,000,000", "8,000"}
    assert all(len(d) == 16 and "T" not in d for d in table["date"])  # YYYY-MM-DD HH:MM

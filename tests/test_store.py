import json

import pytest
import torch

from workbench import modeling, store
from workbench.store import LocalStore, StoreError


def _publish_tiny(tiny_model_dir, tmp_path, repo="demo/tiny"):
    folder = tmp_path / "out"
    folder.mkdir()
    for f in tiny_model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    card = store.model_card(repo, base_model="(none)", method="full", dataset="demo",
                            metrics={"rouge1": {"mean": 0.5, "std": 0.1, "n": 3, "ci_low": 0.4, "ci_high": 0.6}},
                            training={"steps": 3}, params={"total": 10, "trainable": 10, "trainable_share": 1.0})
    return folder, store.publish_local(folder, repo, card=card, metrics={"run_id": "r1"})


def test_publish_then_load_round_trip(tiny_model_dir, tmp_store, tmp_path):
    folder, published = _publish_tiny(tiny_model_dir, tmp_path)
    resolved = store.resolve("demo/tiny")
    assert resolved.name == published and resolved.parent.name == "revisions"
    assert (resolved / "README.md").read_text().startswith("---\nlibrary_name: transformers")
    assert "| rouge1 | 0.5000 | [0.4000, 0.6000] | 3 |" in (resolved / "README.md").read_text()
    assert json.loads((resolved / "metrics.json").read_text()) == {"run_id": "r1"}
    original = modeling.load_model(tiny_model_dir, dtype="fp32")
    loaded = modeling.load_model(resolved, dtype="fp32")
    for (name, a), b in zip(original.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert LocalStore().list_repos() == ["demo/tiny"]


def test_new_revision_moves_main_and_old_stays_loadable(tiny_model_dir, tmp_store, tmp_path):
    folder, first = _publish_tiny(tiny_model_dir, tmp_path)
    (folder / "metrics.json").write_text('{"run_id": "r2"}')
    second = LocalStore().publish(folder, "demo/tiny")
    assert second != first
    assert store.resolve("demo/tiny").name == second
    assert store.resolve("demo/tiny", first).name == first
    assert LocalStore().revisions("demo/tiny") == [first, second]
    assert LocalStore().publish(folder, "demo/tiny") == second  # same content, same revision
    assert LocalStore().prune("demo/tiny", keep=1) == [first]
    with pytest.raises(StoreError, match="not found"):
        store.resolve("demo/tiny", first)


@pytest.mark.parametrize("bad", ["../etc", "a/b/c", "/abs/path", "ns/..", "ns/na me", "", "ns/"])
def test_bad_repo_ids_are_refused(bad, tmp_store):
    with pytest.raises(StoreError, match="not a valid repo id"):
        store.resolve(bad)


def test_pickle_and_corrupt_weights_are_refused(tiny_model_dir, tmp_store, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(StoreError, match="pickle"):
        LocalStore().publish(folder, "demo/pickled")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(StoreError, match="corrupt"):
        store.check_safetensors(corrupt)
    assert not LocalStore().exists("demo/pickled")


def test_missing_repo_offline_gives_one_line_error(tmp_store, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StoreError) as err:
        store.resolve("nobody/nothing-here")
    message = str(err.value)
    assert "nobody/nothing-here" in message and "\n" not in message


def test_interrupted_publish_leaves_main_untouched(tiny_model_dir, tmp_store, tmp_path, monkeypatch):
    folder, first = _publish_tiny(tiny_model_dir, tmp_path)
    (folder / "metrics.json").write_text('{"run_id": "r3"}')

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(OSError):
        LocalStore().publish(folder, "demo/tiny")
    monkeypatch.undo()
    assert store.LocalStore(tmp_store).head("demo/tiny") == first
    leftovers = [p.name for p in (tmp_store / "demo" / "tiny" / "revisions").iterdir()]
    assert leftovers == [first]


# ------------------------------------------------------------------------------------------------ fast, useful failures

FAIL_SCRIPT = r"""
import json, sys, time
from workbench import store
out = {}
for ref in sys.argv[1:]:
    start = time.monotonic()
    try:
        store.resolve(ref)
        out[ref] = {"error": None}
    except store.StoreError as err:
        out[ref] = {"error": str(err)}
    out[ref]["seconds"] = time.monotonic() - start
print(json.dumps(out))
"""


def resolve_in_subprocess(tmp_path, refs, **env) -> dict:
    """store.resolve in a fresh process (huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import): per ref, the
    error message and the seconds the call took."""
    import os
    import subprocess
    import sys

    from workbench import paths

    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    full_env.update(WORKBENCH_STORE=str(paths.STORE_DIR), HF_HOME=str(tmp_path / "hf-home"), **env)
    out = subprocess.run([sys.executable, "-c", FAIL_SCRIPT, *refs], cwd=paths.REPO_ROOT, env=full_env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _demo_names(tiny_model_dir, tmp_path):
    for name in ("demo/flan-t5-demo-base", "demo/flan-t5-demo-full"):
        folder = tmp_path / name.replace("/", "-")
        folder.mkdir()
        _publish_tiny(tiny_model_dir, folder, repo=name)


def test_unreachable_hub_fails_fast_and_names_what_exists_offline(tiny_model_dir, tmp_store, tmp_path):
    """No network: a Hub id fails in under 5 s (HF_HUB_OFFLINE: nothing sent; otherwise one quick probe, even where
    the network swallows packets and huggingface_hub's own requests would wait forever), saying the Hub is
    unreachable and which local store models exist offline; never "make demo"."""
    from tests.hubstub import SilentEndpoint, closed_port_url

    _demo_names(tiny_model_dir, tmp_path)
    with SilentEndpoint() as silent:
        cases = {"silent network": dict(HF_ENDPOINT=silent, HF_HUB_OFFLINE="0"),
                 "refused": dict(HF_ENDPOINT=closed_port_url(), HF_HUB_OFFLINE="0"),
                 "HF_HUB_OFFLINE": dict(HF_HUB_OFFLINE="1")}
        answers = {case: resolve_in_subprocess(tmp_path, ["google/flan-t5-base"], **env)["google/flan-t5-base"]
                   for case, env in cases.items()}
    for case, answer in answers.items():
        message = answer["error"]
        assert answer["seconds"] < 5, (case, answer)
        assert message.startswith("google/flan-t5-base@main: not in the local store"), (case, message)
        assert "available offline in the local store: demo/flan-t5-demo-base, demo/flan-t5-demo-full" in message
        assert "make demo" not in message and "\n" not in message
    assert "is not reachable" in answers["silent network"]["error"]
    assert "is not reachable" in answers["refused"]["error"]
    assert "HF_HUB_OFFLINE is set" in answers["HF_HUB_OFFLINE"]["error"]


def test_a_mistyped_store_name_suggests_the_close_ones(tiny_model_dir, tmp_store, tmp_path):
    import time

    from tests.hubstub import HubStub

    _demo_names(tiny_model_dir, tmp_path)
    start = time.monotonic()
    with pytest.raises(StoreError) as offline:  # tests run with HF_HUB_OFFLINE=1
        store.resolve("demo/flan-t5-demo-bse")
    assert time.monotonic() - start < 5
    assert "available offline in the local store: demo/flan-t5-demo-base, demo/flan-t5-demo-full" in str(offline.value)
    close = r"not in the local store .* \(close names: demo/flan-t5-demo-full, demo/flan-t5-demo-base\)$"
    with pytest.raises(StoreError, match=close):
        LocalStore().head("demo/flan-t5-demo-ful")
    with HubStub() as hub:  # online: the Hub says it does not exist; the close local names are offered
        answer = resolve_in_subprocess(tmp_path, ["demo/flan-t5-demo-bse"], HF_ENDPOINT=hub.url,
                                       HF_HUB_OFFLINE="0")["demo/flan-t5-demo-bse"]
    assert "repository not found" in answer["error"]
    assert answer["error"].endswith("; close names in the local store: demo/flan-t5-demo-base, demo/flan-t5-demo-full")


def test_model_card_names_its_recipe(tmp_store):
    from workbench import paths

    card = store.model_card("local/x", base_model="demo/flan-t5-demo-base", method="lora", dataset="demo",
                            metrics=None, training={"recipe": "configs/recipes/lora.yaml", "steps": 3}, params=None)
    assert "Recipe: `configs/recipes/lora.yaml` (python -m trainers.lora --config configs/recipes/lora.yaml)" in card
    absolute = str(paths.REPO_ROOT / "configs" / "recipes" / "ppo.yaml")
    card = store.model_card("local/y", base_model="local/x", method="ppo", dataset="demo", metrics=None,
                            training={"recipe": absolute}, params=None)
    assert "Recipe: `configs/recipes/ppo.yaml` (python -m trainers.ppo --config configs/recipes/ppo.yaml)" in card
    assert str(paths.REPO_ROOT) not in card  # a card never names the machine's folders
    card = store.model_card("local/z", base_model="x/y", method="full", dataset="demo", metrics=None,
                            training={"steps": 3}, params=None)
    assert "Recipe:" not in card


def test_store_errors_do_not_reveal_the_servers_folders(tmp_path):
    from workbench.paths import REPO_ROOT
    from workbench.store import LocalStore, StoreError

    for root in (tmp_path / "elsewhere" / "store", REPO_ROOT / "store"):
        with pytest.raises(StoreError) as err:
            LocalStore(root).head("demo/not-there")
        assert str(REPO_ROOT) not in str(err.value) and str(tmp_path) not in str(err.value)


# ------------------------------------------------------------------------------------------------ one record per run

def test_a_published_run_carries_its_results_record_with_the_revision(tiny_model_dir, tmp_store, tmp_path):
    """store.publish_run writes the store's metrics.json from the run record: the same record results/ gets, with
    the store revision filled in, and that revision still verifies (it names the record's content too)."""
    from tests.test_results import valid_run
    from workbench import results

    folder = tmp_path / "out"
    folder.mkdir()
    for f in tiny_model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    run = {**valid_run(), "revision": None}
    published = store.publish_run(folder, "demo/tiny", run, card="# demo/tiny\n")
    revision = published["revision"]
    assert revision == LocalStore().head("demo/tiny") and run["revision"] is None
    assert LocalStore().read_metrics("demo/tiny") == published == {**run, "revision": revision}
    assert json.loads((folder / "metrics.json").read_text()) == published  # the copy a push to the Hub uploads
    assert results.read(results.write_metrics(published)) == published
    assert LocalStore().publish(folder, "demo/tiny") == revision  # the same folder again: the same revision
    copy = store.resolve("demo/tiny") / "metrics.json"
    edited = json.loads(copy.read_text())
    edited["metrics"]["rouge1"]["mean"] = 0.9
    copy.write_text(json.dumps(edited, indent=2, ensure_ascii=False) + "\n")
    with pytest.raises(StoreError, match="corrupted"):  # an edited score is caught like an edited weight
        store.resolve("demo/tiny")
    with pytest.raises(results.SchemaError, match="field method"):  # an off-schema record is never published
        store.publish_run(folder, "demo/other", {**run, "method": "magic"}, card="")
    assert not LocalStore().exists("demo/other")


def test_committed_models_verify_and_carry_their_results_record():
    """Each committed demo model's metrics.json is its results/ record (revision blank in revisions published before
    it was filled in), and every revision still matches the hash it is named by. A record re-evaluated since
    (trainers.reevaluate) has new metrics and generation settings; the published copy keeps the ones it was published
    with, and everything else stays the same."""
    from workbench import paths, results

    local = LocalStore(paths.REPO_ROOT / "store")
    assert local.list_repos()
    for repo in local.list_repos():
        record = local.read_metrics(repo)  # resolve: verifies the content hash
        source = results.read(paths.REPO_ROOT / "results" / f"{record['run_id']}.json")
        assert source["revision"] == local.head(repo) and record["revision"] in (None, source["revision"])
        if "reevaluated_at" in source["generation"]:
            same = ("prompt", "max_new_tokens", "scorer")  # the same evaluation, decoded anew
            assert {k: record["generation"][k] for k in same} == {k: source["generation"][k] for k in same}
            source = {**source, "metrics": record["metrics"], "generation": record["generation"]}
        assert record == {**source, "revision": record["revision"]}

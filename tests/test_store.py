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

"""The benchmark's model family: google/flan-t5-base's exact architecture with random weights, in a temporary store.

Speed and memory do not depend on the weights, so the family is built from the architecture alone (the Hub is not
reachable): T5 v1.1 / FLAN-T5-base = 12+12 layers, d_model 768, 12 heads of 64, gated-GELU feed-forward of 2048,
vocabulary 32128, untied lm_head (247.6M parameters). The four slots are published to a `LocalStore` exactly as the
trainers publish them, so the app's own loader (`ModelSet`) reads them as it reads any family:

    bench/flan-t5-base-arch        base, fp32 safetensors (as google/flan-t5-base is published)
    bench/flan-t5-base-arch-full   a separately initialised "full fine-tune", bf16 (the trainers' save_dtype)
    bench/flan-t5-base-arch-lora   LoRA r=32 alpha=32 on q,v with random non-zero A and B (the LoRA recipe's shape)
    bench/flan-t5-base-arch-ppo    another such adapter (the PPO slot is a LoRA adapter too)

The tokenizer is trained with `workbench.modeling.train_tokenizer` on the DialogSum dev dialogues and summaries
(as many pieces as that corpus supports, ~6,600): DialogSum test dialogues get ~1.37 tokens per word and ~185
tokens each, close to FLAN-T5's SentencePiece (~1.3 per word); `Family.token_stats` reports the figures of each run.
Ids above the tokenizer's size decode to nothing, as the 28 unused ids of the real FLAN-T5 vocabulary do; that
changes no timing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import re
import shutil
import tempfile
from pathlib import Path

import torch

from benchmarks.common import Skip, environment
from workbench import data, modeling, paths, prompts

FLAN_T5_BASE = dict(d_model=768, d_kv=64, d_ff=2048, num_heads=12, num_layers=12, num_decoder_layers=12,
                    feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                    relative_attention_max_distance=128, dropout_rate=0.1, layer_norm_epsilon=1e-6)
VOCAB_SIZE = 32128
TOKENIZER_VOCAB = 32100  # FLAN-T5's; the dev corpus supports fewer pieces, and the trainer stops there
LORA = dict(r=32, lora_alpha=32, target_modules=["q", "v"])
REPOS = {"base": "bench/flan-t5-base-arch", "full": "bench/flan-t5-base-arch-full",
         "lora": "bench/flan-t5-base-arch-lora", "ppo": "bench/flan-t5-base-arch-ppo"}
RECIPE = "flan-t5-base-arch v2"  # bump when the family changes, so a reused --family-dir is rebuilt
_WORD = re.compile(r"\S+")


def flan_t5_base_config():
    return modeling.demo_config(VOCAB_SIZE, **FLAN_T5_BASE)


def dialogsum(split: str) -> list[dict]:
    """DialogSum rows from ../shared/data/dialogsum, or Skip with the reason."""
    try:
        return data.load_dialogues(data.SHARED, split)
    except data.DataError as err:
        raise Skip(f"DialogSum {split} split not available ({err}); the benchmarks need real dialogue lengths") \
            from None


@contextlib.contextmanager
def use_store(folder: Path):
    """Point the workbench's local store at `folder` for this process (subprocesses get WORKBENCH_STORE)."""
    saved = paths.STORE_DIR
    paths.STORE_DIR = Path(folder)
    try:
        yield
    finally:
        paths.STORE_DIR = saved


@dataclasses.dataclass
class Family:
    root: Path
    tokenizer: object
    test_rows: list[dict]

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def models_config(self) -> Path:
        """A models YAML naming the four slots, as `python -m workbench --models` reads it (dtype auto)."""
        return self.root / "models.yaml"

    def folder(self, slot: str) -> Path:
        from workbench.store import LocalStore

        return LocalStore(self.store_dir).resolve(REPOS[slot])

    def folders(self) -> dict[str, Path]:
        return {slot: self.folder(slot) for slot in REPOS}

    def env(self) -> dict:
        """Environment for a subprocess that should see this family's store."""
        import os

        return {**os.environ, "WORKBENCH_STORE": str(self.store_dir)}

    def sample(self, n: int, seed: int = 0) -> list[dict]:
        """n DialogSum test rows drawn at random (seeded): a realistic spread of lengths."""
        return random.Random(seed).sample(self.test_rows, min(n, len(self.test_rows)))

    def median_row(self) -> dict:
        """The DialogSum test dialogue of median token length (the Compare measure's input)."""
        lengths = [len(ids) for ids in self.tokenizer([r["dialogue"] for r in self.test_rows]).input_ids]
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        return self.test_rows[order[len(order) // 2]]

    def token_stats(self) -> dict:
        """Tokens per dialogue / per word on the whole test split, and the prompt's tokens for the median one."""
        dialogues = [r["dialogue"] for r in self.test_rows]
        tokens = [len(ids) for ids in self.tokenizer(dialogues).input_ids]
        words = [len(_WORD.findall(d)) for d in dialogues]
        prompt_tokens = [len(ids) for ids in self.tokenizer([prompts.zero_shot(d) for d in dialogues]).input_ids]
        return {"tokenizer_vocab": len(self.tokenizer), "model_vocab": VOCAB_SIZE, "dialogues": len(dialogues),
                "mean_tokens_per_dialogue": round(sum(tokens) / len(tokens), 1),
                "median_tokens_per_dialogue": sorted(tokens)[len(tokens) // 2],
                "max_tokens_per_dialogue": max(tokens),
                "mean_prompt_tokens": round(sum(prompt_tokens) / len(prompt_tokens), 1),
                "tokens_per_word": round(sum(tokens) / sum(words), 3),
                "over_512_tokens": sum(t > 512 for t in prompt_tokens)}


def build(root: Path | None = None) -> Family:
    """Build (or, when `root` holds a family built by the same recipe, reuse) the four-model family."""
    test_rows = dialogsum("test")
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="workbench-bench-"))
    stamp = root / "RECIPE"
    if stamp.is_file() and stamp.read_text().strip() == RECIPE:
        return Family(root, modeling.load_tokenizer(root / "tokenizer"), test_rows)
    for leftover in ("store", "build", "tokenizer"):
        shutil.rmtree(root / leftover, ignore_errors=True)
    modeling.quiet_transformers()
    dev = dialogsum("dev")
    tokenizer = modeling.train_tokenizer([r["dialogue"] for r in dev], vocab_size=TOKENIZER_VOCAB,
                                         extra_texts=[r["summary"] for r in dev])
    tokenizer.save_pretrained(root / "tokenizer")
    _publish_family(root, tokenizer)
    lines = [f"{slot}: {{ref: {repo}}}" for slot, repo in REPOS.items()]
    (root / "models.yaml").write_text("\n".join([*lines, "toxicity: profanity-check", "dtype: auto"]) + "\n")
    stamp.write_text(RECIPE + "\n")
    return Family(root, tokenizer, test_rows)


def _publish_family(root: Path, tokenizer) -> None:
    from peft import LoraConfig, get_peft_model

    from workbench.store import LocalStore

    local, build_dir = LocalStore(root / "store"), root / "build"
    config = flan_t5_base_config()
    base = modeling.build_model(config, seed=0)
    _save(base, tokenizer, build_dir / "base", torch.float32)
    local.publish(build_dir / "base", REPOS["base"])
    _save(modeling.build_model(config, seed=1), tokenizer, build_dir / "full", torch.bfloat16)
    local.publish(build_dir / "full", REPOS["full"])
    for seed, slot in enumerate(("lora", "ppo"), start=2):
        torch.manual_seed(seed)  # init_lora_weights=False: B is random too, so the adapter changes the outputs
        model = get_peft_model(base, LoraConfig(**LORA, task_type="SEQ_2_SEQ_LM", init_lora_weights=False))
        folder = build_dir / slot
        model.save_pretrained(folder, safe_serialization=True)
        adapter_config = json.loads((folder / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = REPOS["base"]
        (folder / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
        local.publish(folder, REPOS[slot])
        base = model.unload()  # back to the plain base for the next adapter
    shutil.rmtree(build_dir)


def _save(model, tokenizer, folder: Path, dtype: torch.dtype) -> None:
    model.to(dtype).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


# ---------------------------------------------------------------------------------------------------- loading


def load_naive(folders: dict[str, Path]) -> dict:
    """The naive set: separately loaded fp32 models (base, full, base+LoRA, base+PPO, base+any further adapter), each
    with its tokenizer, as separate notebooks would hold them. `folders` maps slot -> store folder; returns
    slot -> (model, tokenizer)."""
    from peft import PeftModel

    out = {}
    for slot, folder in folders.items():
        if (Path(folder) / "adapter_config.json").is_file():  # lora, ppo and any further adapter slot (orpo)
            base = modeling.load_model(folders["base"], dtype="fp32", device="cpu")
            model = PeftModel.from_pretrained(base, str(folder), use_safetensors=True).eval()
            folder = folders["base"]  # the adapter's tokenizer is its base's
        else:
            model = modeling.load_model(folder, dtype="fp32", device="cpu")
        out[slot] = (model, modeling.load_tokenizer(folder))
    return out


CT2_PREFIX = "ct2-"  # a variant "ct2-int8" / "ct2-fp32": engine ctranslate2 with that dtype


PLAIN_FP32 = "fp32-plain"  # the fp32 ModelSet with its decoding steps on the ordinary BLAS product


def plain_linear(models):
    """An fp32 ModelSet as it was before `modeling.DecodingLinear`: every linear layer's decoding steps back on the
    ordinary product (benchmarks' "fp32 plain linear" rows measure what `DecodingLinear` gains)."""
    for engine in models.engines:
        for module in engine.model.modules():
            if isinstance(module, modeling.DecodingLinear):
                module.__class__ = torch.nn.Linear
    models.plain_linear = True
    return models


def load_modelset(config_path: Path, dtype: str | None = None):
    """The app's loader on a models config (optionally forcing a dtype, or a "ct2-<dtype>" variant: the CTranslate2
    engine in that dtype); the store is whatever paths.STORE_DIR is. A benchmark family's converted copies go to a
    cache inside the family's folder (deleted with it), the demo family's to the user's cache, as the app's do."""
    from workbench.modelset import DEFAULT_CONFIG, ModelSet, ModelSetConfig

    config = ModelSetConfig.load(config_path)
    if dtype and dtype.startswith(CT2_PREFIX):
        config = dataclasses.replace(config, engine="ctranslate2", dtype=dtype.removeprefix(CT2_PREFIX))
        if Path(config_path).resolve() != DEFAULT_CONFIG.resolve():
            with _ct2_cache(Path(config_path).parent / "ct2-cache"):
                return ModelSet(config, device="cpu")
    elif dtype == PLAIN_FP32:
        return plain_linear(ModelSet(dataclasses.replace(config, dtype="fp32"), device="cpu"))
    elif dtype:
        config = dataclasses.replace(config, dtype=dtype)
    return ModelSet(config, device="cpu")


def _ct2_cache(folder: Path):
    """Converted copies of a benchmark family go beside it, not into the user's cache."""
    from workbench import ct2engine

    return environment(ct2engine.CACHE_ENV, str(folder))


def ct2_available() -> bool:
    """Whether the optional CTranslate2 engine can be benchmarked here."""
    import importlib.util

    return importlib.util.find_spec("ctranslate2") is not None

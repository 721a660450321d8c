"""Batched generation shared by the app, the trainers and the evaluator.

Prompts are sorted by length so each batch pads little, generated batch by batch, and returned in the caller's
order. With a peft model, `adapter_names` routes each prompt through its own adapter ("__base__" for the base
weights) in the same batch, without touching any global adapter state.

A model computes in its own weights' dtype, without autocast: a bf16 base runs in bf16 and peft runs its fp32 LoRA
matrices in fp32 (casting their inputs itself). Autocast would force those tiny LoRA matmuls into bf16, where a CPU
kernel call costs ~30 µs against ~5 µs in fp32; on the FLAN-T5-base family that was a quarter of a Compare request.
How a served model is prepared (precision, int8 weights, fp32 top logits) is `modeling.prepare_for_inference`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from workbench import baselines
from workbench.tokenizing import encode

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in mixed-adapter batches


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings. The default is greedy with no 3-gram repeated (`no_repeat_ngram_size=3`, as in
    facebook/bart-large-cnn's generation config): small models that drift off a dialogue fall into loops ("but also
    any outside communications, but also …"), and on real DialogSum test dialogues this setting took the demo
    family's loops from 6-8% of summaries to none and ROUGE-1 up by ~0.008 per model. `no_repeat_ngram_size=0` is
    plain greedy, the reference recipe's evaluation setting."""

    max_new_tokens: int = 64
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 3
    min_new_tokens: int = 0
    copy_bias: float = 0.0  # lean towards the prompt's own tokens (`CopyBias`); 0 = none, as the app serves

    def __post_init__(self):
        checks = {
            "max_new_tokens": 1 <= self.max_new_tokens <= 1024,
            "num_beams": 1 <= self.num_beams <= 16,
            "temperature": 0.0 < self.temperature <= 10.0,
            "top_k": 0 <= self.top_k <= 1000,
            "top_p": 0.0 < self.top_p <= 1.0,
            "repetition_penalty": 0.5 <= self.repetition_penalty <= 5.0,
            "no_repeat_ngram_size": 0 <= self.no_repeat_ngram_size <= 10,
            "min_new_tokens": 0 <= self.min_new_tokens <= self.max_new_tokens,
            "copy_bias": 0.0 <= self.copy_bias <= 20.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"generation setting out of range: {', '.join(f'{b}={getattr(self, b)}' for b in bad)}")

    def to_kwargs(self) -> dict:
        kwargs = dict(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, do_sample=self.do_sample,
                      repetition_penalty=self.repetition_penalty, no_repeat_ngram_size=self.no_repeat_ngram_size)
        if self.min_new_tokens:  # else left out, so that a model's own floor (generation_config) still applies
            kwargs["min_new_tokens"] = self.min_new_tokens
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        return kwargs

    def as_dict(self) -> dict:
        return asdict(self)


def match_lengths(source: torch.Tensor, previous: torch.Tensor, pad_id: int, span: int = 1) -> torch.Tensor:
    """How many of the tokens written up to each decoder position t match, in order, the source up to each position
    j (the summary "... be joining Billy" against the dialogue's "... be joining Billy": 3 at that "Billy", 1 at
    every other "Billy"), counted up to `span`. Padding never matches. source (rows, S), previous (rows, T) -> (rows,
    T, S) as integers."""
    same = (previous[:, :, None] == source[:, None, :]) & (source != pad_id)[:, None, :]
    if span <= 1:
        return same.long()
    lengths, run = torch.zeros_like(same, dtype=torch.long), torch.zeros_like(source)
    for t in range(previous.shape[1]):
        run = torch.where(same[:, t], torch.nn.functional.pad(run[:, :-1], (1, 0)) + 1, 0).clamp(max=span)
        lengths[:, t] = run
    return lengths


def copy_boost(source: torch.Tensor, previous: torch.Tensor, vocab_size: int, bias: float | torch.Tensor,
               pad_id: int, span: int = 1, last: bool = False,
               inner: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """What the copy bias adds to the logits, at every decoder position at once: `bias` on each token of the row's
    source that starts a word (every token but the `inner` ones, `inner_pieces`), and twice `bias` more on each token
    that follows, somewhere in the source, the token just written
    (`previous[:, t]` at position t), at most `3 * bias` in all. With `span` > 1 the pointer follows only the places
    that match the most of the last `span` tokens written (`match_lengths`): where "be" occurs ten times in a
    dialogue, "will #Person2# be" occurs once. source (rows, S), previous (rows, T) -> (rows, T, vocab_size), or
    (rows, 1, vocab_size) for the last position alone (`last`); `bias` a number or one per row. Decoding uses it one
    position at a time (`CopyBias`), training on the whole teacher-forced summary (`copy_biased_logits`), so that a
    model trained with a bias decodes with the logits it learned, but for `inner` (ids, or `inner_mask` of them),
    which decoding (and PPO, whose policy is what decoding samples) passes and a fine-tune's loss does not. Padding
    (`pad_id`) is never boosted and a row only reads its own source. Both pass the source and the summary through the model's retelling table first
    (`retell_source`, `retell_keys`), where it has one.

    Why decoding leaves the pieces inside a word alone: boosted like the others, they pushed a summary that left the
    dialogue's words ("persuade") for its own ("divorce", which the 6,000 pieces of the demo tokenizer spell in two)
    mid-word towards the dialogue's pieces: "divorcesuade". Decoding with word starts alone (the pointer still follows
    a copied word to its end) took such made-up words in the demo family's summaries of DialogSum dev from 1.1% of
    their words to 0.5% (full model) and from 1.5% to 0.4% (LoRA), and ROUGE-1 up. Why training does not: the full
    recipe trained with it scored less, twice (docs/RESULTS.md, "Word starts only"); trained with the bias on every
    piece, a model learns to outweigh it on the pieces it must not copy."""
    lengths = match_lengths(source, previous, pad_id, span)
    if last:
        lengths = lengths[:, -1:]
    rows, positions = lengths.shape[:2]
    bias = torch.as_tensor(bias, dtype=torch.float32, device=source.device).reshape(-1, 1)
    real = (source != pad_id).float() * bias
    starts = real
    if inner is not None and len(inner):
        inside = inner if isinstance(inner, torch.Tensor) and inner.dtype == torch.bool else \
            inner_mask(inner, vocab_size, source.device)
        starts = real * ~inside[source]
    boost = torch.zeros(rows, vocab_size, device=source.device).scatter_(1, source, starts)
    boost = boost[:, None, :].repeat(1, positions, 1)
    longest = (lengths == lengths.amax(-1, keepdim=True)) & (lengths > 0)
    follows = longest[:, :, :-1] * real[:, None, 1:]
    boost.scatter_add_(2, source[:, None, 1:].expand(rows, positions, -1), 2 * follows)
    return torch.minimum(boost, 3 * bias[:, :, None])  # a token that follows the last one at several places: once


def inner_mask(inner: Sequence[int] | torch.Tensor, vocab_size: int, device=None) -> torch.Tensor:
    """`inner` piece ids as a boolean mask over the vocabulary (what `copy_boost` indexes)."""
    inside = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    inside[torch.as_tensor(inner, device=device)] = True
    return inside


def inner_pieces(tokenizer) -> list[int] | None:
    """The ids of the pieces that go on a word rather than start one, which the copy bias leaves alone
    (`copy_boost`): in a SentencePiece vocabulary (T5's, the demo family's), the pieces without the word-start mark
    "▁" that begin with a letter ("suade" of "▁per" "suade"). Digits and punctuation stay boosted, as "'s" after a tag
    or "2" in "#Person2#" do. None for a tokenizer without "▁" pieces, whose copy bias boosts every piece."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if not any(isinstance(p, str) and p.startswith("▁") for p in pieces):
        return None
    return [i for i, p in enumerate(pieces) if isinstance(p, str) and p[:1].isalpha()]


def retell_table(tokenizer) -> dict | None:
    """The token ids the retelling pointer (`retell_source`) needs, from a tokenizer that holds each speaker tag as
    one token, apart from a following ":" and a following "'s" (in one or two pieces: the demo family's tokenizer
    writes "#Person1#'s" as "#Person1#", "'", "s"); None for others, e.g. FLAN-T5's, whose models then copy the
    dialogue as it is. Kept in the model's config (`set_copy_bias`) as plain lists."""
    def single(text: str) -> int | None:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        return ids[0] if len(ids) == 1 and ids[0] != tokenizer.unk_token_id else None

    tags = [single("#Person1#"), single("#Person2#")]
    tail = tokenizer("#Person1#:", add_special_tokens=False).input_ids
    possessive = tokenizer("#Person1#'s", add_special_tokens=False).input_ids
    if None in tags or len(tail) != 2 or tail[0] != tags[0]:
        return None
    if possessive[0] != tags[0] or not 2 <= len(possessive) <= 3:
        return None

    # the restate rule's own point of view (baselines.POINT_OF_VIEW), word by word: a word that becomes a tag (or a
    # tag's "'s") points at the tag, a word that becomes another word ("am" -> "is") at that word
    def variants(role: str) -> list[int]:
        words = [w for w, new in baselines.POINT_OF_VIEW.items() if new in (role, role + "'s")]
        ids = {single(v) for w in words for v in (w, w[0].upper() + w[1:])}
        return sorted(i for i in ids if i is not None)

    plain = {w: new for w, new in baselines.POINT_OF_VIEW.items() if "{" not in new}
    pairs = {(single(v), single(r)) for w, new in plain.items()
             for v, r in ((w, new), (w.capitalize(), new.capitalize()))}
    return {"tags": tags, "colon": tail[1], "possessive": possessive[1:], "speaker": variants("{me}"),
            "listener": variants("{you}"), "replace": sorted([a, b] for a, b in pairs if None not in (a, b))}


def retell_source(source: torch.Tensor, table: dict | None) -> torch.Tensor:
    """The dialogue as a summary retells it, token for token: each first-person word of `baselines.retell` becomes its
    speaker's tag, each second-person one the other speaker's, "am" "is", "we" "they" ("Do you think I am right?"
    said by #Person2# -> "Do #Person1# think #Person2# is right?"). A copy
    pointer over this sequence points, after "Do", at the tag the summary writes where the dialogue says "you", and
    after the tag at "think". Without it a model trained with the plain pointer chose the right tag for 49% of the
    tags in the restate rule's summaries of 200 DialogSum dev dialogues, and the token after a tag for 56% (81% for
    the other tokens); trained with it, 68% and 61%. Positions before the first `#PersonN#:` keep their token.
    source (rows, S) -> (rows, S)."""
    if table is None:
        return source
    tags = torch.tensor(table["tags"], device=source.device)
    positions = torch.arange(source.shape[1], device=source.device).expand_as(source)
    turn = torch.isin(source, tags) & (torch.roll(source, -1, 1) == table["colon"])
    turn[:, -1] = False
    start = torch.where(turn, positions, -1).cummax(1).values
    speaker = source.gather(1, start.clamp(min=0))
    known = start >= 0
    out = source.clone()
    for old, new in table["replace"]:
        out[source == old] = new
    me = torch.isin(source, torch.tensor(table["speaker"], device=source.device)) & known
    you = torch.isin(source, torch.tensor(table["listener"], device=source.device)) & known
    out[me] = speaker[me]
    out[you] = (tags.sum() - speaker)[you]  # the other of the two tags
    return out


def possessive_pieces(table: dict | None) -> list[int]:
    """The tokens of "'s" after a tag in a retelling table: one or two (a table of an older layout holds one id)."""
    if table is None:
        return []
    pieces = table["possessive"]
    return [pieces] if isinstance(pieces, int) else list(pieces)


def retell_keys(previous: torch.Tensor, table: dict | None) -> torch.Tensor:
    """The tokens a retelling pointer keys on: the summary so far, with the last piece of an "'s" that follows a tag
    read as the tag (the dialogue's "my bike" is "#Person1#'s bike" in the summary; `retell_source` makes "my" the
    tag, so the pointer goes on to "bike"). A first piece of two ("'") keys as itself."""
    pieces = possessive_pieces(table)
    if not pieces or previous.shape[1] <= len(pieces):
        return previous

    def back(k: int) -> torch.Tensor:  # the token k places to the left (-1 before the start)
        return torch.cat([torch.full_like(previous[:, :k], -1), previous[:, :-k]], 1)

    ends = torch.ones_like(previous, dtype=torch.bool)
    for k, piece in enumerate(reversed(pieces)):
        ends &= (previous if k == 0 else back(k)) == piece
    tag = back(len(pieces))
    return torch.where(ends & torch.isin(tag, torch.tensor(table["tags"], device=previous.device)), tag, previous)


def model_copy_retell(model) -> dict | None:
    """The retelling table a model's copy bias reads the dialogue through (`config.copy_retell`, set with the bias
    by `set_copy_bias`); None for a model without one, which copies the dialogue as it is."""
    config = getattr(model, "config", model)
    return getattr(config, "copy_retell", None) or None


def model_copy_span(model) -> int:
    """How many of the last tokens written a model's copy pointer matches against the dialogue (`config.copy_span`,
    set with the bias by `set_copy_bias`; 1, the token just written, for a model without one)."""
    config = getattr(model, "config", model)
    return int(getattr(config, "copy_span", None) or 1)


def model_copy_inner(model) -> list[int] | None:
    """The pieces a model's copy bias does not boost when it decodes (`config.copy_inner`, `inner_pieces` of its
    tokenizer, set with the bias by `set_copy_bias`, or when a model saved before it is loaded:
    `modeling.load_model`); None: every piece."""
    config = getattr(model, "config", model)
    return getattr(config, "copy_inner", None) or None


def set_copy_bias(model, bias: float, tokenizer, span: int | None = None) -> None:
    """Make `model` train and decode with a copy bias: `config.copy_bias`, `config.copy_retell` from its
    tokenizer (None where the tokenizer splits the speaker tags), `config.copy_span` (None: the model's own, 1 if
    it has none) and `config.copy_inner`, the pieces inside a word that decoding leaves alone. Saved with the model, so
    every path that loads it decodes as it was trained; adapters read their base's."""
    model.config.copy_bias = float(bias)
    model.config.copy_retell = retell_table(tokenizer) if bias else None
    model.config.copy_span = (model_copy_span(model) if span is None else int(span)) if bias else None
    model.config.copy_inner = inner_pieces(tokenizer) if bias else None


def copy_biased_logits(logits: torch.Tensor, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor, bias: float,
                       pad_id: int, retell: dict | None = None, span: int = 1,
                       inner: Sequence[int] | None = None) -> torch.Tensor:
    """A seq2seq model's teacher-forced logits with its copy bias added: what a trainer's loss reads when the model
    is trained to decode with `CopyBias` (`trainers.sft --copy-bias`; the model records it as `config.copy_bias`).
    A fine-tune's loss boosts every piece (`inner` None); PPO passes the model's `copy_inner`, so that the
    log-probabilities it learns from are those of the summaries decoding sampled."""
    if not bias:
        return logits
    boost = copy_boost(retell_source(input_ids, retell), retell_keys(decoder_input_ids, retell), logits.shape[-1],
                       bias, pad_id, span, inner=inner)
    return logits + boost.to(logits.dtype)


@contextlib.contextmanager
def training_with_copy_bias(model, pad_id: int):
    """Within the block, every teacher-forced call of `model` (input ids and decoder input ids given, as trl's
    preference trainers call it) returns the logits with the model's copy bias added (`copy_biased_logits`, on every
    piece, as a fine-tune's loss reads it): a loss written elsewhere then trains on the logits the model decodes
    with. Calls without both (generation
    steps, which read encoder outputs) are left alone. Nothing changes for a model without a bias."""
    bias = model_copy_bias(model)

    def add_bias(module, args, kwargs, output):
        input_ids = args[0] if args else kwargs.get("input_ids")
        decoder_input_ids = kwargs.get("decoder_input_ids")
        if input_ids is None or decoder_input_ids is None or getattr(output, "logits", None) is None:
            return output
        output.logits = copy_biased_logits(output.logits, input_ids, decoder_input_ids, bias, pad_id,
                                           model_copy_retell(model), model_copy_span(model))
        return output

    handle = model.register_forward_hook(add_bias, with_kwargs=True) if bias else None
    try:
        yield model
    finally:
        if handle is not None:
            handle.remove()


def model_min_new_tokens(model, adapter: str | None = None) -> int:
    """The shortest summary a model writes, in tokens, as Hub summarizers carry a minimum length in their generation
    config (facebook/bart-large-cnn: min_length 56); 0 for a model without one. A model's own is its
    `generation_config.min_new_tokens`. On a peft model, `adapter` (default: the active one) writes its own minimum
    where it carries one (`adapter_min_new_tokens`: a summarizer's minimum belongs to the summarizer, not to the
    base it was trained on), else its base's; `BASE_ADAPTER` reads the base's. `generate` never writes less,
    whatever the settings ask for."""
    if isinstance(getattr(model, "peft_config", None), dict) and hasattr(model, "get_base_model"):
        name = adapter or model.active_adapter
        own = adapter_min_new_tokens(model, name) if name != BASE_ADAPTER else None
        if own is not None:
            return own
        model = model.get_base_model()
    return int(getattr(getattr(model, "generation_config", None), "min_new_tokens", None) or 0)


def adapter_min_new_tokens(model, name: str) -> int | None:
    """The minimum length adapter `name` of a peft model carries (None: it writes as long as its base). An adapter
    keeps it in its folder's generation_config.json (`modeling.save_adapter_min_new_tokens`), read when it is
    attached (`modeling.attach_adapter`) into its peft config, where it travels with the adapter."""
    config = getattr(model, "peft_config", {}).get(name)
    value = getattr(config, "min_new_tokens", None)
    return None if value is None else int(value)


def set_adapter_min_new_tokens(model, name: str, value: int | None) -> None:
    """Give adapter `name` a minimum length of its own (None: its base's again). peft saves only its config's
    dataclass fields, so the value never reaches adapter_config.json."""
    model.peft_config[name].min_new_tokens = None if value is None else int(value)


def set_model_min_new_tokens(model, value: int) -> None:
    """Make `model` write `value` tokens at least (0: no minimum): a peft model's active adapter gets it as its own
    (the base keeps its), any other model in its generation_config."""
    if isinstance(getattr(model, "peft_config", None), dict) and hasattr(model, "get_base_model"):
        set_adapter_min_new_tokens(model, model.active_adapter, value)
    else:
        model.generation_config.min_new_tokens = value or None


def model_no_repeat_ngram_size(model) -> int:
    """The no-repeat n-gram size a model carries as its own, in its generation_config (as Hub summarizers carry one:
    facebook/bart-large-cnn 3); 0 for none. A peft model's is its base's: every adapter on it decodes with it.
    `generate` applies the stricter of it and the settings' (`stricter_no_repeat`), as it applies a model's own
    minimum length whatever the settings ask for."""
    if isinstance(getattr(model, "peft_config", None), dict) and hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return int(getattr(getattr(model, "generation_config", None), "no_repeat_ngram_size", None) or 0)


def stricter_no_repeat(*sizes: int) -> int:
    """The smallest of the no-repeat n-gram sizes that are set (a smaller n bans more); 0 where none is."""
    return min((n for n in sizes if n), default=0)


def with_model_floor(settings: GenerationSettings, model, adapter: str | None = None) -> GenerationSettings:
    """`settings` with the minimum length raised to the model's (or its adapter's) own (`model_min_new_tokens`, at
    most max_new_tokens)."""
    floor = min(model_min_new_tokens(model, adapter), settings.max_new_tokens)
    return replace(settings, min_new_tokens=floor) if floor > settings.min_new_tokens else settings


class RowMinNewTokens(LogitsProcessor):
    """A minimum length per row of a batch: the end of sequence is barred from row i until it has written
    `floors[i]` tokens (transformers' MinNewTokensLengthLogitsProcessor holds every row to one minimum). A mixed-
    adapter batch serves the prompted base, which writes as it likes, beside adapters that write 20 tokens at least.
    Each row's floor touches only that row, so a summary is the same alone and batched."""

    def __init__(self, floors: Sequence[int], eos_token_id: int):
        self.floors, self.eos, self.start = torch.tensor(list(floors)), eos_token_id, None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:  # the decoder's prompt (its start token) is not written text
            self.start = input_ids.shape[1]
        floors = self.floors.to(scores.device)
        if floors.shape[0] != scores.shape[0]:  # beams or samples: each prompt's rows are consecutive
            floors = floors.repeat_interleave(scores.shape[0] // floors.shape[0])
        early = floors > input_ids.shape[1] - self.start
        if early.any():
            scores = scores.clone()
            scores[early, self.eos] = -float("inf")
        return scores


def model_copy_bias(model) -> float:
    """The copy bias a model decodes with (`config.copy_bias`, 0 for every model that has none, e.g. any Hub model):
    part of its logits, so every path that generates from it adds it (`generate`, the trainers' rollouts). A peft
    model reads its base's: adapters carry no config of their own, so the bias is the base's, shared by all of them."""
    config = getattr(model, "config", model)  # a model, or its config
    return float(getattr(config, "copy_bias", 0.0) or 0.0)


class CopyBias(LogitsProcessor):
    """Decoding that leans towards the source (`copy_boost`): `bias` is added to the logit of every token of the
    row's prompt that starts a word (all of them where `inner` is None), and twice `bias` to every token that
    follows, somewhere in the prompt, the token just written (the next token of a copied span): a pointer at decoding
    time, for models too small to copy reliably on their own.

    Two uses. A model trained with a copy bias (`config.copy_bias`) always decodes with it, as it was trained (the
    demo family's full model does; adapters on a base that carries one share the base's). On top of that,
    `GenerationSettings.copy_bias` leans any model further towards its source (0 by default and in the app): added
    at decoding only to the demo family as it was on 2026-12-01, 3 (the best of 1-6 on DialogSum dev) lifted
    ROUGE-1 on DialogSum test (full 0.323 -> 0.342) but lengthened the adapters' summaries by two thirds and, on the
    demo test split, copied the heated dialogues' insults, undoing PPO's toxicity drop (docs/RESULTS.md, "Copy bias").
    Each row reads only its own prompt, so a summary is the same alone and batched."""

    def __init__(self, prompt_ids: torch.Tensor, pad_id: int, bias: float, retell: dict | None = None, span: int = 1,
                 inner: Sequence[int] | None = None):
        self.prompt_ids, self.pad_id, self.bias = retell_source(prompt_ids, retell), pad_id, bias
        self.retell, self.span = retell, span
        self.inner, self.inside = inner, None  # the ids; their vocabulary mask, made at the first step

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        source = self.prompt_ids
        if source.shape[0] != scores.shape[0]:  # beams or samples: each prompt's rows are consecutive
            source = source.repeat_interleave(scores.shape[0] // source.shape[0], dim=0)
        # the last `span` tokens written, as the pointer reads them (an "'s" after a tag: the tag)
        keys = retell_keys(input_ids[:, -self.span - len(possessive_pieces(self.retell)):], self.retell)
        if self.inside is None and self.inner is not None and len(self.inner):
            self.inside = inner_mask(self.inner, scores.shape[-1], scores.device)
        boost = copy_boost(source, keys, scores.shape[-1], self.bias, self.pad_id, self.span, last=True,
                           inner=self.inside)[:, 0]
        return scores + boost.to(scores.dtype)


def copy_bias_processors(model, prompt_ids: torch.Tensor, pad_id: int,
                         settings: GenerationSettings | None = None) -> dict:
    """model.generate() keyword arguments that apply the model's own copy bias plus the settings' (none when both
    are 0)."""
    bias = model_copy_bias(model) + (settings.copy_bias if settings is not None else 0.0)
    if not bias:
        return {}
    processor = CopyBias(prompt_ids, pad_id, bias, model_copy_retell(model), model_copy_span(model),
                         model_copy_inner(model))
    return {"logits_processor": LogitsProcessorList([processor])}


def row_floors(model, settings: GenerationSettings, adapter_names: Sequence[str] | None, n: int) -> list[int]:
    """The minimum length of each of `n` rows: the settings' own, raised to the model's (each row's adapter's where
    `adapter_names` routes them), at most max_new_tokens."""
    names = adapter_names if adapter_names is not None else [None] * n
    floors = {name: with_model_floor(settings, model, name).min_new_tokens for name in set(names)}
    return [floors[name] for name in names]


def model_eos_id(model, tokenizer) -> int:
    eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    return int(eos if eos is not None else tokenizer.eos_token_id)


def model_input_limit(tokenizer, default: int = 512) -> int:
    """The longest input the model is meant to read (T5 uses relative positions; 512 is its training length)."""
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 100_000 else default


def length_bucket(tokens: int, multiple: int) -> int:
    """The padded length a prompt of `tokens` tokens is computed at when padded to a multiple of `multiple`.

    Why buckets: a CPU softmax or matrix product over a longer padded row may sum in another order than over the
    row's own length, so a prompt padded to a longer neighbour's length can round differently and, in reduced
    precision, end in another summary. Prompts padded to the same bucket have the same shapes alone and batched."""
    return -(-max(tokens, 1) // multiple) * multiple


def count_tokens(tokenizer, text: str) -> int:
    return len(encode(tokenizer, text, truncation=False).input_ids)


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    settings: GenerationSettings = GenerationSettings(),
    *,
    adapter_names: Sequence[str] | None = None,
    batch_size: int = 16,
    max_input_tokens: int | None = None,
    seed: int | None = None,
    progress: bool = False,
    pad_to_multiple_of: int | None = None,
) -> list[str]:
    """Generate one text per prompt, batched by length; order is preserved.

    `adapter_names[i]` selects the adapter for `prompts[i]` (peft mixed-adapter batch). Inputs longer than
    `max_input_tokens` (default: the tokenizer's limit) are truncated. `pad_to_multiple_of` pads every batch to a
    multiple of that many tokens: the serving path uses it so that a prompt is computed at the same padded length
    alone and batched with other requests of its length bucket (see `length_bucket`). A model that carries a minimum
    length (`model_min_new_tokens`; per row of a mixed-adapter batch, each adapter its own) writes at least that many
    tokens, as it carries its copy bias.
    """
    if adapter_names is not None and len(adapter_names) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(adapter_names)} adapter names")
    if not prompts:
        return []
    limit = max_input_tokens or model_input_limit(tokenizer)
    floors = row_floors(model, settings, adapter_names, len(prompts))
    no_repeat = stricter_no_repeat(settings.no_repeat_ngram_size, model_no_repeat_ngram_size(model))
    device = next(model.parameters()).device
    lengths = [len(ids) for ids in encode(tokenizer, list(prompts), truncation=True, max_length=limit).input_ids]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    outputs: list[str | None] = [None] * len(prompts)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="generate", unit="batch")
    if seed is not None:
        torch.manual_seed(seed)
    for batch in batches:
        enc = encode(tokenizer, [prompts[i] for i in batch], return_tensors="pt", padding=True, truncation=True,
                     max_length=limit, pad_to_multiple_of=pad_to_multiple_of).to(device)
        extra = {} if adapter_names is None else {"adapter_names": [adapter_names[i] for i in batch]}
        processors = copy_bias_processors(model, enc.input_ids, tokenizer.pad_token_id, settings).get(
            "logits_processor", LogitsProcessorList())
        # every row's minimum, passed explicitly so that a base's own generation_config cannot override an
        # adapter's: the smallest for the whole batch, and a row processor where rows need more than that
        kwargs = {**settings.to_kwargs(), "min_new_tokens": min(floors[i] for i in batch),
                  "no_repeat_ngram_size": no_repeat}
        if len({floors[i] for i in batch}) > 1:
            processors.append(RowMinNewTokens([floors[i] for i in batch], model_eos_id(model, tokenizer)))
        if processors:
            extra["logits_processor"] = processors
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs, **extra)
        for i, text in zip(batch, tokenizer.batch_decode(out, skip_special_tokens=True)):
            outputs[i] = text.strip()
    return outputs  # type: ignore[return-value]

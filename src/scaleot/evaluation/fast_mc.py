"""Fast multiple-choice scoring: each context runs once and its choices share its KV cache.

lm-eval's ``HFLM`` scores a ``k``-choice example as ``k`` independent sequences
``context + choice``: the context runs ``k`` times, the vocabulary head runs at every
position, and each batch is padded to its longest request. This module returns the same
numbers with less work:

1. **Context pass.** The contexts of a batch of examples (sorted by length, left-padded)
   run once through the decoder (``model.base_model``) with a ``DynamicCache``; the head
   runs only at the last context position, which predicts every choice's first token.
2. **Choice pass.** The cache is repeated per choice (``batch_select_indices``) and all
   choices of the batch run as one right-padded batch on top of it; the head runs only
   where a continuation token is predicted.

What is scored is exactly lm-eval's ``multiple_choice`` output type (lm-eval 0.4.13,
``TemplateLM.loglikelihood`` / ``_encode_pair`` / ``HFLM._loglikelihood_tokens``):

- tokenisation: trailing whitespace of the context moves onto the continuation;
  ``whole = encode(context + continuation)``, ``context_enc = encode(context)`` and the
  continuation is ``whole[len(context_enc):]`` (an empty context becomes the BOS/EOS
  prefix token). ``encode`` is ``tokenizer.encode`` with the tokenizer's own special-token
  default, as ``HFLM`` with ``add_bos_token=None`` calls it.
- window: ``(context_enc + continuation_enc)[-(W + 1):][:-1]`` with ``W`` from
  ``lm_eval.models.utils.resolve_max_length`` (the config's ``n_positions`` /
  ``max_position_embeddings`` / ``n_ctx``, else the tokenizer's, else 2048). A truncated
  example's choices may keep different amounts of context; those choices are then
  scored as separate groups (still exact) and the example is counted in ``truncated``.
- ``loglikelihood(choice) = sum_t log p(cont_t | input_<t)`` in fp32 (log-softmax of
  fp32 logits), ``acc`` = argmax of it, ``acc_norm`` = argmax of it divided by the
  choice string's length in characters (``len(choice)``; ties go to the first choice,
  as ``np.argmax``).

Numerically the two paths differ only by float summation order (about 1e-5 in fp32).
Blocks without attention (an emulator's harmonizers or dropped blocks) leave their cache
layer empty; it is filled with placeholders of the context's length so that the masks,
which HF sizes from the first layer of each attention type, stay right. Where the cached
path cannot reproduce a plain forward pass (no ``cache`` argument, an architecture
outside :data:`scaleot.models.arch.ARCHITECTURES`, any mismatch on a probe)
:func:`fast_scorer_problem` says why, and :func:`scaleot.evaluation.evaluate_mc` falls
back to lm-eval.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scaleot.data import MCExample
from scaleot.errors import ScaleOTError
from scaleot.models.device import bf16_autocast

# Each forward pass reads every weight once, so small passes are slow on a CPU (about 40 tokens'
# worth of time each for SmolLM2-135M): batches are sized in tokens, not examples.
CONTEXT_BUDGET = 2048  # padded context tokens per context pass
CACHE_BUDGET = 8192  # choices x (context + choice) positions per choice pass: bounds the repeated KV cache
PASS_OVERHEAD = 48  # what one extra forward pass costs, in positions (SmolLM2-135M, this CPU: about 40)


@dataclass
class ChoiceGroup:
    """Choices of one example that share one (possibly truncated) context.

    Attributes:
        example: index of the example in the scored list.
        context: context token ids (``>= 1`` token).
        choices: ``(choice index, continuation token ids)`` pairs, each continuation ``>= 1`` token.
    """

    example: int
    context: list[int]
    choices: list[tuple[int, list[int]]]


@dataclass
class EncodedTask:
    """The groups to score for a list of examples, and how many examples were truncated."""

    groups: list[ChoiceGroup]
    truncated: int
    tokens_fast: int
    tokens_lm_eval: int


def model_window(model: nn.Module, tokenizer) -> int:
    """The context window lm-eval's ``HFLM`` uses for ``model`` (``resolve_max_length``)."""
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import resolve_max_length

    return resolve_max_length(model.config, tokenizer, default=HFLM._DEFAULT_MAX_LENGTH)


def prefix_token_id(tokenizer) -> int:
    """The token that stands for an empty context: BOS, else EOS (``HFLM.prefix_token_id``)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


class LmEvalEncoder:
    """Tokenises ``(context, continuation)`` pairs exactly as lm-eval's ``HFLM`` does."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.prefix = prefix_token_id(tokenizer)
        self.prefix_text = tokenizer.decode(self.prefix) if self.prefix is not None else None

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        """``HFLM.tok_encode`` with ``add_bos_token=None``."""
        kw = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        if add_special_tokens is None and self.prefix_text and text.startswith(self.prefix_text):
            kw["add_special_tokens"] = False
        return list(self.tokenizer.encode(text, **kw))

    def pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """``TemplateLM.loglikelihood``'s encoding of one request: ``(context_enc, continuation_enc)``."""
        if context == "":
            cont = self.encode(continuation, add_special_tokens=False)
            if cont and cont[0] == self.prefix:
                return cont[:1], cont[1:]
            return [self.prefix], cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx):]


def check_examples(name: str, examples: Sequence[MCExample]) -> None:
    """Refuse what no scorer can score honestly, with a one-line :class:`ScaleOTError`.

    Raises:
        ScaleOTError: an example with fewer than 2 choices (accuracy would be trivially 1),
            an empty choice string (``acc_norm`` divides by its length), or a label that is
            not a choice index.
    """
    for i, ex in enumerate(examples):
        if len(ex.choices) < 2:
            raise ScaleOTError(f"{name}: example {i} has {len(ex.choices)} choice(s); multiple-choice "
                               "scoring needs at least 2 (one choice would always be right)")
        empty = [c for c, text in enumerate(ex.choices) if not isinstance(text, str) or text == ""]
        if empty:
            raise ScaleOTError(f"{name}: example {i} has an empty choice (index {empty[0]}); a choice "
                               "needs at least one character (acc_norm divides by its length)")
        if not isinstance(ex.label, int) or not 0 <= ex.label < len(ex.choices):
            raise ScaleOTError(f"{name}: example {i} has label {ex.label!r}, not an index into its choices")


def encode_examples(name: str, examples: Sequence[MCExample], tokenizer, window: int) -> EncodedTask:
    """lm-eval's requests for ``examples``, grouped by shared context and left-truncated to ``window``.

    Args:
        name: the task name (for error messages).
        examples: the examples; see :func:`check_examples` for what is refused.
        tokenizer: a HF tokenizer.
        window: the model's context window ``W`` (:func:`model_window`).

    Returns:
        :class:`EncodedTask`; ``tokens_fast`` / ``tokens_lm_eval`` count the decoder
        positions each scorer runs (the arithmetic bound of the speed-up).

    Raises:
        ScaleOTError: see :func:`check_examples`; a choice that tokenises to nothing; a
            choice longer than the window.
    """
    check_examples(name, examples)
    enc = LmEvalEncoder(tokenizer)
    groups, truncated, tokens_fast, tokens_lm_eval = [], 0, 0, 0
    for i, ex in enumerate(examples):
        by_context: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        cut = False
        for c, choice in enumerate(ex.choices):
            ctx, cont = enc.pair(ex.context, choice)
            if not cont:
                raise ScaleOTError(f"{name}: example {i}, choice {c} ({choice!r}) has no tokens of its own")
            if len(cont) > window:
                raise ScaleOTError(f"{name}: example {i}, choice {c} has {len(cont)} tokens, more than the "
                                   f"model's window of {window}")
            if len(ctx) + len(cont) > window + 1:  # lm-eval: (ctx + cont)[-(W + 1):][:-1]
                ctx, cut = ctx[len(ctx) + len(cont) - window - 1:], True
            by_context.setdefault(tuple(ctx), []).append((c, cont))
            tokens_lm_eval += len(ctx) + len(cont) - 1
        truncated += cut
        for ctx, choices in by_context.items():
            groups.append(ChoiceGroup(i, list(ctx), choices))
            tokens_fast += len(ctx) + sum(len(cont) - 1 for _, cont in choices)
    return EncodedTask(groups, truncated, tokens_fast, tokens_lm_eval)


def _cache_argument(module: nn.Module) -> str | None:
    """The name under which ``module.forward`` takes a KV cache (transformers 5: ``cache``)."""
    params = inspect.signature(module.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def head_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head on ``hidden`` ``[..., H]`` -> logits ``[..., V]``, with the model's final
    logit soft-capping where its config has one (gemma). The head is the architecture
    table's (``ArchSpec.head``), else the model's output embeddings."""
    from scaleot.models import arch_spec, get_submodule

    try:
        head = get_submodule(model, arch_spec(model).head)
    except ScaleOTError:
        head = model.get_output_embeddings()
    logits = head(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


class ContextSharingScorer:
    """Sum of log-likelihoods of every choice, one context pass per example.

    Args:
        model: a causal LM of a type in the architecture table (full model, emulator, plug-in).
        bf16: run the forward passes under bf16 autocast where it is fast
            (:func:`scaleot.models.device.bf16_autocast`); log-softmax is always fp32.
        batch_size: examples per batch at most (default: as many as ``context_budget`` allows).
        context_budget: padded context tokens per context pass at most (default :data:`CONTEXT_BUDGET`).
        cache_budget: choices x padded (context + choice) positions per choice pass at most
            (the repeated cache holds that many positions per layer; default :data:`CACHE_BUDGET`).
    """

    def __init__(self, model: nn.Module, bf16: bool = False, batch_size: int | None = None,
                 context_budget: int | None = None, cache_budget: int | None = None):
        self.model = model
        self.bf16 = bf16
        self.batch_size = batch_size or 1 << 30
        self.context_budget = context_budget or CONTEXT_BUDGET
        self.cache_budget = cache_budget or CACHE_BUDGET
        self.base = model.base_model
        self.cache_arg = _cache_argument(self.base)
        self.device = next(model.parameters()).device

    def _batches(self, groups: list[ChoiceGroup]) -> list[list[int]]:
        """Group indices in batches of similar context length (longest first)."""
        order = sorted(range(len(groups)), key=lambda g: -len(groups[g].context))
        batches, current = [], []
        for g in order:
            width = len(groups[current[0]].context) if current else len(groups[g].context)
            if current and (len(current) >= self.batch_size or (len(current) + 1) * width > self.context_budget):
                batches.append(current)
                current = []
            current.append(g)
        if current:
            batches.append(current)
        return batches

    @torch.no_grad()
    def score_groups(self, groups: list[ChoiceGroup], bar=None) -> list[list[float]]:
        """Log-likelihood of each group's choices, in the order of ``group.choices``; ``bar``
        (a :func:`scaleot.progress.progress_bar`) advances by one per group scored."""
        out: list[list[float]] = [[] for _ in groups]
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in self._batches(groups):
                for g, lls in zip(batch, self._score_batch([groups[g] for g in batch]), strict=True):
                    out[g] = lls
                if bar is not None:
                    bar.update(len(batch))
        finally:
            self.model.train(was_training)
        return out

    def _row_chunks(self, clen: torch.Tensor, context_width: int) -> list[torch.Tensor]:
        """Choices with more than one token, longest first, cut into the chunks that cost least.

        A chunk of ``n`` choices whose longest needs ``w`` positions costs
        ``PASS_OVERHEAD + n * w`` position-equivalents (padding included) and must keep
        ``n * (context_width + w)`` within the cache budget; the cheapest cut of the sorted
        list is found by dynamic programming (``O(N^2)``, ``N`` = choices in the batch).
        """
        order = [int(i) for i in torch.argsort(clen, descending=True, stable=True) if clen[i] > 1]
        widths = [int(clen[i]) - 1 for i in order]
        best, cut = [0.0] + [math.inf] * len(order), [0] * (len(order) + 1)
        for j in range(1, len(order) + 1):
            for i in range(j - 1, -1, -1):
                if i < j - 1 and (j - i) * (context_width + widths[i]) > self.cache_budget:
                    break
                cost = best[i] + PASS_OVERHEAD + (j - i) * widths[i]
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        chunks, j = [], len(order)
        while j > 0:
            chunks.append(order[cut[j]:j])
            j = cut[j]
        return [torch.tensor(c, device=clen.device) for c in reversed(chunks)]

    def _score_batch(self, groups: list[ChoiceGroup]) -> list[list[float]]:
        from transformers import DynamicCache

        dev = self.device
        # 1. contexts, left-padded: [B, Tc]
        lens = torch.tensor([len(g.context) for g in groups], device=dev)
        tc = int(lens.max())
        ids = torch.zeros(len(groups), tc, dtype=torch.long, device=dev)
        mask = torch.zeros_like(ids)
        for b, g in enumerate(groups):
            ids[b, tc - len(g.context):] = torch.tensor(g.context, device=dev)
            mask[b, tc - len(g.context):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        with bf16_autocast(self.bf16, dev):
            hidden = self.base(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                               **{self.cache_arg: cache}).last_hidden_state[:, -1]  # [B, H]
            first = F.log_softmax(head_logits(self.model, hidden).float(), -1)  # [B, V]
        for layer in cache.layers:  # a block without attention (harmonizer, dropped block) left its layer
            if not layer.is_initialized:  # empty: give it the context's length so the masks are sized right
                dummy = torch.zeros(len(groups), 1, tc, 1, device=dev)
                layer.update(dummy, dummy)
        # 2. choices on top of the repeated cache, right-padded: [N, Tk]
        owner = torch.tensor([b for b, g in enumerate(groups) for _ in g.choices], device=dev)
        conts = [cont for g in groups for _, cont in g.choices]
        clen = torch.tensor([len(c) for c in conts], device=dev)
        tk = int(clen.max())
        cont_ids = torch.zeros(len(conts), tk, dtype=torch.long, device=dev)
        for n, c in enumerate(conts):
            cont_ids[n, :len(c)] = torch.tensor(c, device=dev)
        lls = first[owner, cont_ids[:, 0]]  # [N]: log p(cont_0 | context)
        for rows in self._row_chunks(clen, tc):  # sorted by length: little padding
            sub = _select_rows(cache, owner[rows])
            width = int(clen[rows].max()) - 1
            steps = torch.arange(width, device=dev)
            keep = steps[None, :] < (clen[rows, None] - 1)  # [n, width]: positions that predict a token
            ctx_len = lens[owner[rows], None]
            full_mask = torch.cat([mask[owner[rows]], keep.long()], dim=1)
            cont_pos = torch.where(keep, ctx_len + steps[None, :], ctx_len - 1)  # pads: any valid position
            inputs = cont_ids[rows, :width]
            with bf16_autocast(self.bf16, dev):
                h = self.base(input_ids=inputs, attention_mask=full_mask, position_ids=cont_pos,
                              use_cache=True, **{self.cache_arg: sub}).last_hidden_state  # [n, width, H]
                logp = F.log_softmax(head_logits(self.model, h[keep]).float(), -1)  # [M, V]
            picked = logp.gather(-1, cont_ids[rows, 1:width + 1][keep][:, None])[:, 0]  # [M]
            lls = lls.index_add(0, rows[:, None].expand_as(keep)[keep], picked)
            del sub
        del cache
        lls = lls.tolist()
        out, n = [], 0
        for g in groups:
            out.append(lls[n:n + len(g.choices)])
            n += len(g.choices)
        return out


def _select_rows(cache, rows: torch.Tensor):
    """A cache holding ``rows`` of ``cache``'s batch (``[n]`` indices, repeats allowed); ``cache`` is untouched.

    ``batch_select_indices`` re-assigns each layer's ``keys``/``values``, so it runs on
    shallow copies of the cache and its layers.
    """
    sub = copy.copy(cache)
    sub.layers = [copy.copy(layer) for layer in cache.layers]
    sub.batch_select_indices(rows)
    return sub


def fast_scorer_problem(model: nn.Module, bf16: bool = False) -> str | None:
    """Why the context-sharing scorer cannot match a plain forward pass on ``model`` (``None``: it can).

    Checks the model type against the architecture table and the decoder's cache argument,
    then scores two synthetic examples (contexts of different lengths, choices of 1 and 3
    tokens) both ways and compares the log-likelihoods: within 1e-3 in fp32; under bf16
    autocast, against an fp32 pass, within 3x the plain bf16 pass's own error plus 5e-2.
    """
    from scaleot.models import arch_spec

    try:
        arch_spec(model)
    except ScaleOTError as e:
        return str(e)
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return f"{type(model).__name__} exposes no separate decoder (base_model)"
    if _cache_argument(base) is None:
        return f"{type(base).__name__}.forward takes no KV cache argument"
    device = next(model.parameters()).device
    vocab = model.config.get_text_config().vocab_size
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, max(4, vocab), (24,), generator=gen).tolist()
    groups = [ChoiceGroup(0, tokens[:9], [(0, tokens[9:10]), (1, tokens[10:13])]),
              ChoiceGroup(1, tokens[13:18], [(0, tokens[18:21]), (1, tokens[21:22])])]
    try:
        fast = ContextSharingScorer(model, bf16=bf16).score_groups(groups)
    except Exception as e:  # any failure of the cached path means: use lm-eval
        return f"cached forward failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    seqs = [(g.context + cont, len(cont)) for g in groups for _, cont in g.choices]
    ids = torch.zeros(len(seqs), max(len(q) for q, _ in seqs), dtype=torch.long, device=device)
    for n, (q, _) in enumerate(seqs):
        ids[n, :len(q)] = torch.tensor(q, device=device)  # right-padded, no mask: as lm-eval runs it

    def plain(autocast: bool) -> list[float]:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), bf16_autocast(autocast, device):
                logp = F.log_softmax(model(input_ids=ids[:, :-1]).logits.float(), -1)  # [4, T-1, V]
        finally:
            model.train(was_training)
        return [logp[n, len(q) - 1 - k:len(q) - 1].gather(-1, ids[n, len(q) - k:len(q), None]).sum().item()
                for n, (q, k) in enumerate(seqs)]

    lls = [ll for lls in fast for ll in lls]
    if not bf16:
        for ll, ref in zip(lls, plain(False), strict=True):
            if not abs(ref - ll) <= 1e-3:
                return f"cached log-likelihood {ll:.5f} differs from a plain forward pass ({ref:.5f})"
        return None
    # Under bf16 autocast two orders of the same sums differ by bf16 rounding, which grows with the
    # model and the CPU's kernels (0.13 nats on a 10-token sum, seen for SmolLM2 on one CPU): a fixed
    # tolerance both passes real bugs on one machine and fails correct code on another. So the fast
    # path is held to the plain bf16 pass's own error: both against the fp32 pass, the fast path may
    # be at most 3x as far off as the plain one, plus 5e-2.
    exact, rounded = plain(False), plain(True)
    noise = max(abs(r - e) for r, e in zip(rounded, exact, strict=True))
    for ll, ref in zip(lls, exact, strict=True):
        if not abs(ref - ll) <= 3 * noise + 5e-2:
            return (f"cached log-likelihood {ll:.5f} under bf16 differs from an fp32 forward pass ({ref:.5f}) "
                    f"by more than 3x a plain bf16 pass does ({noise:.5f})")
    return None


@dataclass
class ScoredTask:
    """Per-example scores of one task (see :func:`score_examples`)."""

    loglikelihoods: list[list[float]]
    truncated: int
    tokens_fast: int
    tokens_lm_eval: int


def score_examples(model: nn.Module, tokenizer, examples: Sequence[MCExample], name: str = "task",
                   bf16: bool = False, batch_size: int | None = None, window: int | None = None,
                   bar=None) -> ScoredTask:
    """Log-likelihood of every choice of every example, with lm-eval's tokenisation and window.

    Args:
        model: a causal LM (see :class:`ContextSharingScorer`).
        tokenizer: its tokenizer.
        examples: the examples (checked by :func:`check_examples`).
        name: the task name, for error messages.
        bf16: bf16 autocast where fast.
        batch_size: examples per batch at most (default: batches sized in tokens).
        window: context window in tokens (default: lm-eval's for this model, :func:`model_window`).
        bar: a progress bar to advance by one per context scored (about one per example).

    Returns:
        :class:`ScoredTask` with ``loglikelihoods[i][c]`` for example ``i``, choice ``c``.
    """
    encoded = encode_examples(name, examples, tokenizer, window or model_window(model, tokenizer))
    scored = ContextSharingScorer(model, bf16=bf16, batch_size=batch_size).score_groups(encoded.groups, bar)
    lls = [[float("nan")] * len(ex.choices) for ex in examples]
    for group, values in zip(encoded.groups, scored, strict=True):
        for (c, _), ll in zip(group.choices, values, strict=True):
            lls[group.example][c] = ll
    return ScoredTask(lls, encoded.truncated, encoded.tokens_fast, encoded.tokens_lm_eval)


def predictions(loglikelihoods: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """``(pred, pred_norm)`` as lm-eval's ``multiple_choice``: argmax of the log-likelihoods, and of
    the log-likelihoods divided by each choice's length in characters (first index on ties)."""
    lls = list(loglikelihoods)
    norm = [ll / len(c) for ll, c in zip(lls, choices, strict=True)]
    return max(range(len(lls)), key=lls.__getitem__), max(range(len(norm)), key=norm.__getitem__)

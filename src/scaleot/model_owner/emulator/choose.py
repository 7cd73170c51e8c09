"""Choose ``alpha`` per model from what the model owner can measure (issue 28, item 5).

The same ``alpha`` does not withhold the same amount from two models: removing half of
SmolLM2-135M's middle multiplies its held-out KJV perplexity by a few, and half of Gemma 3
270M's by far more (BENCHMARKS.md, "alpha per model"). So instead of one number for every
model, the model owner can state the privacy floor and let ``scaleot emulate`` find the
``alpha`` that reaches it:

    the smallest ``alpha = k / |E|`` (``k`` middle blocks replaced, ``|E|`` middle blocks)
    whose emulator's held-out generic-text perplexity is at least ``target_ppl_ratio``
    times the full model's.

Smallest, because on the suite's dev splits the plug-in gain falls as more of the middle is
replaced; at least the target, because the untuned emulator must stay clearly worse than the
model. The candidates are built exactly as the chosen one will be (same method, ``beta``,
ranking) and scored on the same held-out text, in the same precision as the full model;
every candidate's perplexity goes into ``emulator.json`` (``alpha_choice``), so the choice
can be checked and redone. ``--target-ppl-ratio 0`` (the field's default) turns the choice
off: ``--alpha`` is used as given.
"""

from __future__ import annotations

import time
from dataclasses import replace

from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.models.device import autocast_used, bf16_autocast, wants_bf16


def held_out_blocks(config, tokenizer):
    """The generic-text blocks the choice is scored on: the corpus's held-out part (the
    documents stage 1 and distillation never train on)."""
    from scaleot.data import corpus_splits

    _, held = corpus_splits(config.corpus, tokenizer, block_size=config.block_size, max_train_blocks=1,
                            max_heldout_blocks=config.choice_blocks)
    return held


def scan(model: nn.Module, tokenizer, config, build, middle: list[int], target: float | None = None,
         progress: bool = False) -> dict:
    """Score the candidates ``k = 1 .. |E| - 1`` (``alpha = k / |E|``) upward, stopping at the first
    whose perplexity ratio reaches ``target`` (``None``: score them all, as
    ``bench/alpha_curve.py`` does).

    Returns:
        ``blocks``, ``full_ppl``, ``autocast`` (what ran), ``candidates`` (``alpha``,
        ``replaced``, ``ppl``, ``ratio`` each), ``reached`` (the scan stopped at ``target``) and
        ``seconds``.
    """
    from scaleot.evaluation.perplexity import perplexity
    from scaleot.progress import progress_bar

    t0 = time.perf_counter()
    blocks = held_out_blocks(config, tokenizer)
    device = next(model.parameters()).device
    bf16 = wants_bf16(config.autocast, device)

    def ppl(m: nn.Module) -> float:
        with bf16_autocast(bf16, device):
            return perplexity(m, blocks, batch_size=4)

    full = ppl(model)
    n = len(middle)
    candidates, reached = [], False
    with progress_bar(n - 1, "choosing alpha", progress, unit="candidate") as bar:
        for k in range(1, n):
            alpha = k / n
            emu = build(replace(config, alpha=alpha, target_ppl_ratio=0.0, diagnostic_blocks=0))
            value = ppl(emu)
            del emu
            candidates.append({"alpha": round(alpha, 6), "replaced": k, "ppl": round(value, 4),
                               "ratio": round(value / full, 4)})
            bar.update(1)
            bar.set_postfix(removed=k, ratio=f"{value / full:.2f}")
            if target is not None and value >= target * full:
                reached = True
                break
    return {"blocks": int(len(blocks)), "full_ppl": round(full, 4), "autocast": autocast_used(bf16, device),
            "candidates": candidates, "reached": reached, "seconds": round(time.perf_counter() - t0, 3)}


def choose_alpha(model: nn.Module, tokenizer, config, build, middle: list[int], progress: bool = False) -> dict:
    """The smallest candidate (:func:`scan`) whose held-out perplexity reaches
    ``config.target_ppl_ratio`` times the full model's. Methods that train (uniform-kd) are
    refused by the config itself.

    Args:
        model: the full model (left unchanged).
        tokenizer: its tokenizer (for the generic text).
        config: the :class:`~scaleot.model_owner.emulator.config.EmulatorConfig` asked for;
            only ``alpha`` is chosen, every other option stays.
        build: ``config -> emulator module`` (the caller's ``build_emulator`` with its
            arguments; called once per candidate, without the transfer diagnostic).
        middle: the middle block indices ``E``.
        progress: a bar over the candidates (``--progress``).

    Returns:
        The record kept in ``emulator.json`` as ``alpha_choice``: the rule, the full model's
        perplexity, every candidate scored and the chosen ``alpha``.

    Raises:
        ScaleOTError: no candidate reaches the target (the message gives the largest ratio reached).
    """
    target = config.target_ppl_ratio
    found = scan(model, tokenizer, config, build, middle, target, progress)
    candidates = found["candidates"]
    if not found["reached"]:
        best = max(candidates, key=lambda c: c["ratio"]) if candidates else {"ratio": 1.0, "alpha": 0.0}
        raise ScaleOTError(f"no alpha reaches --target-ppl-ratio {target}: the largest held-out "
                           f"perplexity ratio is {best['ratio']} (alpha {best['alpha']}); lower the target or "
                           f"set --alpha with --target-ppl-ratio 0")
    return {
        "rule": "the smallest alpha whose emulator's held-out generic-text perplexity is at least "
                "target_ppl_ratio times the full model's",
        "target_ppl_ratio": target,
        "alpha_given": config.alpha,
        "alpha": candidates[-1]["alpha"],
        "corpus": config.corpus,
        "blocks": found["blocks"],
        "block_size": config.block_size,
        "autocast": found["autocast"],
        "full_ppl": found["full_ppl"],
        "candidates": candidates,
        "seconds": found["seconds"],
    }

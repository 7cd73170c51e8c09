"""Build an emulator from a full model: ``build_emulator(model, config) -> EmulatorBundle``.

Methods (docs/method.md sections 3 and 5), all behind the same layer-map interface:

- ``scaleot``: the ``round(alpha · |E|)`` lowest-ranked middle blocks (stage 1's ranking)
  are replaced by their harmonizers; SRC with ``beta`` on the kept middle blocks; then,
  with ``calibrate_steps``, the chosen harmonizers are distilled for this one configuration.
- ``drop``: the same ranking, identities instead of harmonizers (ablation).
- ``uniform``: OT's uniform LayerDrop, ``keep`` evenly spaced middle blocks.
- ``uniform-kd``: ``uniform`` then distilled on generic text (:mod:`.distill`).
- ``crash``: CKA clustering, one kept block per cluster, shared copies elsewhere (:mod:`.crash`).

``beta`` (SRC) composes with every method. The full model is never modified: the emulator
is a new module built from a blockless copy of it plus copies of the blocks it keeps.
Before returning, :func:`~scaleot.model_owner.emulator.leaks.find_leaks` checks that no shipped
tensor approximates a protected weight.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace

from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.exchange.bundle import FORMAT_VERSION, EmulatorBundle
from scaleot.exchange.importance import read_importance
from scaleot.exchange.layers import IdentityBlock
from scaleot.model_owner.emulator import layer_map as lm
from scaleot.model_owner.emulator.config import EmulatorConfig
from scaleot.model_owner.emulator.leaks import find_leaks
from scaleot.model_owner.emulator.src_compress import compress_block
from scaleot.models.arch import arch_spec, get_blocks, get_submodule, set_blocks, set_submodule
from scaleot.models.emulator import shared_copy
from scaleot.models.fingerprint import fingerprint_model
from scaleot.models.loading import DEFAULT_MODEL

log = logging.getLogger(__name__)


def _blockless_copy(model: nn.Module, share_weights: bool = False) -> nn.Module:
    """A copy of ``model`` without its decoder blocks (embeddings, norm, head, config).

    With ``share_weights`` the copy's modules are new but its parameters and buffers are
    ``model``'s own tensors (no second copy of the embeddings and head in memory).
    """
    path = arch_spec(model).blocks
    blocks = get_submodule(model, path)
    set_submodule(model, path, nn.ModuleList())
    try:
        return shared_copy(model) if share_weights else copy.deepcopy(model)
    finally:
        set_submodule(model, path, blocks)


def _plan(model, tokenizer, config: EmulatorConfig, middle: list[int], base_fp: str):
    """The layer map, the harmonizers (scaleot) and extra info for each method."""
    n, nb, nt = len(get_blocks(model)), config.n_bottom, config.n_top
    extra: dict = {"importance": None}
    harmonizers = None
    if config.method in ("scaleot", "drop"):
        imp, harmonizers, extra["importance"] = read_importance(
            config.importance, base_fp, with_harmonizers=config.method == "scaleot")
        stand_in = "harmonizer" if config.method == "scaleot" else "identity"
        layer_map = lm.plan_ranked(n, nb, nt, [int(i) for i in imp["ranking"]], config.alpha, stand_in)
        if harmonizers is not None:
            missing = [e["source"] for e in layer_map if e["kind"] == "harmonizer" and e["source"] not in harmonizers]
            if missing:
                raise ScaleOTError(f"importance folder has no harmonizer for blocks {missing}")
            extra["harmonizer"] = next(iter(harmonizers.values())).config.to_dict()
    elif config.method in ("uniform", "uniform-kd"):
        layer_map = lm.plan_uniform(n, nb, nt, config.resolved_keep(len(middle)))
    else:  # crash
        from scaleot.model_owner.emulator.crash import crash_clusters

        if tokenizer is None:
            raise ScaleOTError("method 'crash' needs the tokenizer (for its generic-text calibration)")
        clusters, reps, cka = crash_clusters(model, tokenizer, middle, config.resolved_keep(len(middle)), config)
        layer_map = lm.plan_shared(n, nb, nt, clusters, reps)
        extra["crash"] = {"clusters": clusters, "representatives": reps,
                          "cka_adjacent": [round(cka[i][i + 1], 4) for i in range(len(middle) - 1)]}
    return layer_map, harmonizers, extra


def protected_weights(model: nn.Module, layer_map: list[dict], middle: list[int]) -> dict:
    """Weights that must not travel: blocks not kept, dense attention of SRC'd blocks."""
    spec, blocks = arch_spec(model), get_blocks(model)
    kept = {e["source"]: e for e in layer_map if e["kind"] == "kept"}
    out = {}
    for i in middle:
        if i not in kept:
            out.update({f"block{i}.{k}": v for k, v in blocks[i].state_dict().items()})
        elif kept[i]["src_rank"]:
            for path in spec.attn.values():
                out[f"block{i}.{path}.weight"] = get_submodule(blocks[i], path).weight
    return out


def count_params(model: nn.Module) -> int:
    """Unique parameters (tied and shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def _diagnostic(model: nn.Module, emu: nn.Module, tokenizer, layer_map: list[dict], config: EmulatorConfig) -> dict:
    """The transfer diagnostic on held-out generic text (:mod:`scaleot.model_owner.emulator.diagnostic`)."""
    from scaleot.data import corpus_splits  # held-out text: not what stage 1 or KD trained on
    from scaleot.model_owner.emulator.diagnostic import gradient_alignment

    _, held = corpus_splits(config.corpus, tokenizer, block_size=config.block_size, max_train_blocks=1,
                            max_heldout_blocks=config.diagnostic_blocks)
    device = next(model.parameters()).device
    batches = [held[i:i + 2].to(device) for i in range(0, len(held), 2)]
    out = gradient_alignment(model, emu, layer_map, batches)
    return {"loss": "next-token", "corpus": config.corpus, "blocks": len(held), "block_size": config.block_size,
            "gradient_cosine": out}


def build_emulator(model: nn.Module, config: EmulatorConfig, tokenizer=None, share_weights: bool = False, *,
                   base_model: str = DEFAULT_MODEL, resume: bool = False, progress: bool = False) -> EmulatorBundle:
    """Build the emulator ``[A, E*]`` of ``model`` described by ``config``.

    Args:
        model: the full causal LM (left unchanged).
        config: method and options; see :class:`EmulatorConfig`.
        tokenizer: the base tokenizer; shipped in the bundle, needed by crash and uniform-kd.
        share_weights: the emulator's modules reuse ``model``'s tensors wherever they are
            the same values (embeddings, head, adapter blocks, the non-attention part of
            SRC'd blocks, kept blocks that no distillation trains), so building it costs
            the SVD factors and harmonizers, not a second copy of the model. Only for an
            emulator that is saved and dropped (``scaleot emulate``): training its shared
            tensors would change ``model``.
        base_model: the name or path ``model`` was loaded from (``--model``), as recorded in
            ``emulator.json`` (``base_model``, ``options.model``) and a distillation's run folder.
        resume: a distillation continues from its newest checkpoint (``--resume``).
        progress: a bar over the candidates of the alpha choice (``--target-ppl-ratio``).

    Returns:
        An :class:`EmulatorBundle` (not saved yet; call ``bundle.save(dir)``).

    Raises:
        ScaleOTError: bad options for this model, an importance folder from other weights,
            or a shipped tensor that would approximate a protected weight.
    """
    t0 = time.perf_counter()
    spec = arch_spec(model)
    blocks = get_blocks(model)
    middle = config.check_for(len(blocks))
    choice = None
    if config.target_ppl_ratio:  # alpha per model, from held-out perplexity (choose.py)
        from scaleot.model_owner.emulator.choose import choose_alpha

        if tokenizer is None:
            raise ScaleOTError("--target-ppl-ratio needs the tokenizer (for its generic text)")
        choice = choose_alpha(model, tokenizer, config, lambda c: build_emulator(
            model, c, tokenizer, share_weights=True, base_model=base_model).model, middle, progress)
        config = replace(config, alpha=choice["alpha"])
    base_fp = fingerprint_model(model)
    layer_map, harmonizers, extra = _plan(model, tokenizer, config, middle, base_fp)
    t_plan = time.perf_counter() - t0

    emu = _blockless_copy(model, share_weights)
    trained = {"uniform-kd": "kept"}.get(config.method)  # kinds distillation updates in place
    new_blocks: list[nn.Module | None] = []
    for e in layer_map:
        kind, src = e["kind"], e["source"]
        if kind in ("adapter", "kept"):
            share = share_weights and kind != trained
            block = shared_copy(blocks[src]) if share else copy.deepcopy(blocks[src])
            if kind == "kept":
                e["src_rank"] = compress_block(block, spec, config.beta) or None
            new_blocks.append(block)
        elif kind == "harmonizer":
            ref = next(model.parameters())
            new_blocks.append(copy.deepcopy(harmonizers[src]).to(device=ref.device, dtype=ref.dtype))
        elif kind == "identity":
            new_blocks.append(IdentityBlock())
        else:
            new_blocks.append(None)
    for e in layer_map:
        if e["kind"] == "shared":
            new_blocks[e["position"]] = shared_copy(new_blocks[e["shares"]])
    set_blocks(emu, new_blocks, [e["source"] for e in layer_map])
    emu.eval()
    timing = {"plan_s": round(t_plan, 3), "assemble_s": round(time.perf_counter() - t0 - t_plan, 3)}
    run_level = {"base_model": base_model, "resume": resume}  # what a distillation records and resumes

    if config.method == "uniform-kd":
        from scaleot.model_owner.emulator.distill import distill

        if tokenizer is None:
            raise ScaleOTError("method 'uniform-kd' needs the tokenizer (for its generic text)")
        extra["distill"] = distill(emu, model, tokenizer, layer_map, config, **run_level)
        timing["distill_s"] = extra["distill"]["seconds"]
    elif config.method == "scaleot" and config.calibrate_steps:
        from scaleot.model_owner.emulator.distill import distill

        if tokenizer is None:
            raise ScaleOTError("harmonizer calibration needs the tokenizer (for its generic text)")
        extra["calibration"] = distill(emu, model, tokenizer, layer_map, config, kinds=("harmonizer",),
                                       steps=config.calibrate_steps, lr=config.calibrate_lr,
                                       label="calibrate", **run_level)
        timing["calibrate_s"] = extra["calibration"]["seconds"]

    if choice is not None:
        extra["alpha_choice"] = choice
    leaks = find_leaks(emu, protected_weights(model, layer_map, middle))
    if leaks:
        raise ScaleOTError(f"privacy check failed: {leaks[0]} (and {len(leaks) - 1} more)")
    if tokenizer is not None and config.diagnostic_blocks:
        t1 = time.perf_counter()
        extra["transfer_diagnostic"] = _diagnostic(model, emu, tokenizer, layer_map, config)
        timing["diagnostic_s"] = round(time.perf_counter() - t1, 3)
    n_emu, n_full = count_params(emu), count_params(model)
    timing["stage2_s"] = round(time.perf_counter() - t0, 3)
    info = {
        "format_version": FORMAT_VERSION,
        "method": config.method,
        "options": config.options(base_model),
        "base_model": base_model,
        "base_fingerprint": base_fp,
        "model_type": model.config.model_type,
        "num_blocks_full": len(blocks),
        "adapter": config.split.to_dict(),
        "layer_map": layer_map,
        "params": {"emulator": n_emu, "full": n_full, "ratio": round(n_emu / n_full, 4)},
        **extra,
        "timing": timing,
    }
    return EmulatorBundle(model=emu, tokenizer=tokenizer, info=info)

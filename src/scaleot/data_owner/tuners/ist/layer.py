"""PEFT modules grouped by decoder block, and response suppression (docs/method.md section 4).

IST works on upstream peft: LoRA and DoRA layers are found as ``peft``'s
:class:`~peft.tuners.lora.LoraLayer` instances inside each decoder block (the blocks
come from the architecture table, :func:`scaleot.models.get_blocks`), so a LoRA module
belongs to the block whose subtree holds it: no parsing of module names.

Response suppression scales a layer's PEFT output by ``gamma`` through peft's own
per-adapter ``scaling`` (``y = W x + scaling · B A x``), inside a scoped context
manager that restores the exact previous values. For DoRA the scaled quantity is the
low-rank update inside the magnitude/direction reparametrisation (peft applies
``scaling`` there), which is DoRA's analogue of "the adapter's output".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.models import arch_spec, get_blocks


def base_model_of(model: nn.Module) -> nn.Module:
    """The ``*ForCausalLM`` under a ``PeftModel`` (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def peft_layers_by_block(model: nn.Module) -> dict[int, list[LoraLayer]]:
    """``{block index: [LoraLayer, ...]}`` for every decoder block that holds PEFT modules.

    Args:
        model: a ``PeftModel`` (or a model with peft LoRA/DoRA layers injected).

    Raises:
        ScaleOTError: if the model has no LoRA layer inside its decoder blocks.
    """
    blocks = get_blocks(base_model_of(model))
    found: dict[int, list[LoraLayer]] = {}
    for idx, block in enumerate(blocks):
        layers = [m for m in block.modules() if isinstance(m, LoraLayer)]
        if layers:
            found[idx] = layers
    if not found:
        raise ScaleOTError("IST needs peft LoRA/DoRA modules inside the decoder blocks; found none")
    return found


def peft_parameters(layer: LoraLayer) -> list[nn.Parameter]:
    """The active adapters' parameters of one peft layer (A, B and DoRA magnitude)."""
    params = []
    for name in layer.adapter_layer_names:
        container = getattr(layer, name, None)
        if container is None:
            continue
        for adapter in layer.active_adapters:
            if adapter in container:
                params.extend(container[adapter].parameters())
    return params


@contextmanager
def suppressed(layers: Sequence[LoraLayer], gamma: float) -> Iterator[None]:
    """Scale the PEFT output of ``layers`` by ``gamma`` inside the ``with`` block.

    Example::

        with suppressed(layers_of_blocks_3_and_7, gamma=0.25):
            loss = model(**probe).loss   # blocks 3 and 7 contribute 0.25 x their LoRA delta
    """
    saved = [(layer, dict(layer.scaling)) for layer in layers]
    try:
        for layer in layers:
            for adapter in layer.active_adapters:
                if adapter in layer.scaling:
                    layer.scaling[adapter] = layer.scaling[adapter] * gamma
        yield
    finally:
        for layer, scaling in saved:
            layer.scaling.clear()
            layer.scaling.update(scaling)


def lora_target_modules(model: nn.Module, blocks: Sequence[int] | None = None, roles: str = "all") -> list[str]:
    """Full module names of the projections LoRA should wrap, from the architecture table.

    Args:
        model: the base ``*ForCausalLM`` (before ``get_peft_model``).
        blocks: block indices to cover (default: every block). For an emulator, the
            adapter positions (``EmulatorBundle.adapter_positions``).
        roles: ``"attn"``, ``"mlp"`` or ``"all"`` (both).

    Returns:
        e.g. ``["model.layers.0.self_attn.q_proj", ...]``, usable as
        ``LoraConfig(target_modules=...)`` (peft matches full names exactly).
    """
    spec = arch_spec(model)
    paths = []
    if roles in ("attn", "all"):
        paths += list(spec.attn.values())
    if roles in ("mlp", "all"):
        paths += list(spec.mlp.values())
    if not paths:
        raise ScaleOTError(f"roles must be 'attn', 'mlp' or 'all' (got {roles!r})")
    all_blocks = get_blocks(model)
    indices = range(len(all_blocks)) if blocks is None else blocks
    names = []
    for i in indices:
        for path in paths:
            try:
                all_blocks[i].get_submodule(path)
            except AttributeError:
                continue  # a stand-in block (harmonizer, identity) has no such projection
            names.append(f"{spec.blocks}.{i}.{path}")
    return names


def lora_config_for(
    model: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.0, use_dora: bool = False,
    blocks: Sequence[int] | None = None, roles: str = "all",
) -> LoraConfig:
    """A peft ``LoraConfig`` over the table's projections of ``blocks`` (all by default)."""
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, use_dora=use_dora, task_type="CAUSAL_LM",
        target_modules=lora_target_modules(model, blocks, roles),
        fan_in_fan_out=arch_spec(model).transposed,
    )

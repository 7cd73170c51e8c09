"""The one architecture table: where things live in each supported ``model_type``.

Every piece of layer surgery in scaleot (harmonizers, emulators, SRC, LoRA targets, IST)
asks this table instead of testing ``isinstance`` against model classes. Adding an
architecture means adding one :class:`ArchSpec` row.

Example::

    spec = arch_spec(model)                   # ArchSpec for model.config.model_type
    blocks = get_blocks(model)                # nn.ModuleList of decoder blocks
    q = get_submodule(blocks[3], spec.attn["q"])
    set_blocks(model, new_blocks, sources)    # rebuild with another list of blocks

All blocks in transformers 5 take ``hidden_states`` first and return a tensor, so a
replacement module only has to follow that calling convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from scaleot.errors import ScaleOTError


@dataclass(frozen=True)
class ArchSpec:
    """Where one architecture keeps its parts (dotted paths relative to the model or block).

    Attributes:
        blocks: path from the ``*ForCausalLM`` model to the ``nn.ModuleList`` of decoder blocks.
        attn: role -> path inside a block for the attention projections. Roles are ``q``,
            ``k``, ``v``, ``o``; fused projections (GPT-2's ``c_attn``) use role ``qkv``.
        mlp: role -> path inside a block for the MLP projections.
        attn_module: path inside a block to the attention module (holds ``layer_idx``).
        num_layers_attr: config attribute with the number of blocks.
        embed: path to the input embedding; ``final_norm``: the last norm; ``head``: LM head.
        transposed: True where projections are ``Conv1D`` (weight stored ``[in, out]``).
    """

    blocks: str
    attn: dict[str, str]
    mlp: dict[str, str]
    attn_module: str
    embed: str
    final_norm: str
    head: str = "lm_head"
    num_layers_attr: str = "num_hidden_layers"
    transposed: bool = False
    extra_per_layer_config: tuple[str, ...] = field(default=("layer_types",))


_LLAMA_LIKE = dict(
    blocks="model.layers",
    attn={"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj"},
    mlp={"gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"},
    attn_module="self_attn",
    embed="model.embed_tokens",
    final_norm="model.norm",
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec(**_LLAMA_LIKE),
    "mistral": ArchSpec(**_LLAMA_LIKE),
    "qwen2": ArchSpec(**_LLAMA_LIKE),
    "qwen3": ArchSpec(**_LLAMA_LIKE),
    "gemma3_text": ArchSpec(**_LLAMA_LIKE),
    "gpt2": ArchSpec(
        blocks="transformer.h",
        attn={"qkv": "attn.c_attn", "o": "attn.c_proj"},
        mlp={"fc": "mlp.c_fc", "proj": "mlp.c_proj"},
        attn_module="attn",
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        num_layers_attr="n_layer",
        transposed=True,
    ),
    "opt": ArchSpec(
        blocks="model.decoder.layers",
        attn={"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.out_proj"},
        mlp={"fc1": "fc1", "fc2": "fc2"},
        attn_module="self_attn",
        embed="model.decoder.embed_tokens",
        final_norm="model.decoder.final_layer_norm",
    ),
}
# gemma3's multimodal config wraps a text config; the causal LM itself reports gemma3_text.
ARCHITECTURES["gemma3"] = ARCHITECTURES["gemma3_text"]


def arch_spec(model_or_type: nn.Module | str) -> ArchSpec:
    """The table row for a model (or a ``model_type`` string)."""
    model_type = model_or_type if isinstance(model_or_type, str) else model_or_type.config.model_type
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ScaleOTError(f"unsupported model_type {model_type!r} (supported: {known})") from None


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule(path)`` with a one-line error."""
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise ScaleOTError(f"{type(root).__name__} has no submodule {path!r}") from None


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``path`` inside ``root``."""
    parent_path, _, name = path.rpartition(".")
    parent = get_submodule(root, parent_path) if parent_path else root
    setattr(parent, name, module)


def get_blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM, in order."""
    return get_submodule(model, arch_spec(model).blocks)


def num_blocks(model: nn.Module) -> int:
    return len(get_blocks(model))


def is_decoder_block(model: nn.Module, module: nn.Module) -> bool:
    """True if ``module`` is one of this architecture's real decoder blocks (has attention)."""
    spec = arch_spec(model)
    try:
        module.get_submodule(spec.attn_module)
    except AttributeError:
        return False
    return True


def set_blocks(model: nn.Module, blocks: list[nn.Module], sources: list[int]) -> nn.Module:
    """Rebuild ``model`` in place with another list of blocks.

    Args:
        model: a causal LM from the table.
        blocks: the new blocks, in order; real decoder blocks or stand-ins (harmonizers,
            identities) with the block calling convention.
        sources: for each new position, the original block index it stands for; used to
            keep per-layer config (``layer_types``: sliding vs full attention) consistent.

    The config's layer count and per-layer lists are updated and every real block's
    attention ``layer_idx`` is renumbered to its new position, so KV caches index
    consistently. Stand-ins own no cache slot; their position is simply unused.
    """
    if len(blocks) != len(sources):
        raise ValueError("blocks and sources must have the same length")
    spec = arch_spec(model)
    config = model.config
    for attr in spec.extra_per_layer_config:
        values = getattr(config, attr, None)
        if isinstance(values, list | tuple) and len(values) >= 1:
            setattr(config, attr, [values[s] for s in sources])
    setattr(config, spec.num_layers_attr, len(blocks))
    for pos, block in enumerate(blocks):
        if is_decoder_block(model, block):
            attn = block.get_submodule(spec.attn_module)
            if hasattr(attn, "layer_idx"):
                attn.layer_idx = pos
            if hasattr(block, "layer_idx"):
                block.layer_idx = pos
    set_submodule(model, spec.blocks, nn.ModuleList(blocks))
    return model

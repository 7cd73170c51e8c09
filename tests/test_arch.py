"""The architecture table on a tiny random config of every supported model type."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from scaleot.exchange.layers import IdentityBlock
from scaleot.models import arch_spec, get_blocks, get_submodule, set_blocks

SMALL = dict(vocab_size=96, max_position_embeddings=64)


def make(model_type: str, n_layers: int = 4, layer_types: list[str] | None = None):
    import transformers as tf

    if model_type in ("llama", "mistral", "qwen2"):
        cfg_cls = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config}[model_type]
        cfg = cfg_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers, num_attention_heads=4,
                      num_key_value_heads=2, **SMALL)
    elif model_type == "gemma3_text":
        cfg = tf.Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=8,
                                  layer_types=layer_types or [("sliding_attention", "full_attention")[i % 2] for i in range(n_layers)],
                                  **SMALL)
    elif model_type == "gpt2":
        cfg = tf.GPT2Config(n_embd=32, n_layer=n_layers, n_head=4, n_positions=64, vocab_size=96)
    elif model_type == "opt":
        cfg = tf.OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=n_layers, num_attention_heads=4,
                           word_embed_proj_dim=32, **SMALL)
    else:  # pragma: no cover
        raise ValueError(model_type)
    torch.manual_seed(0)
    return tf.AutoModelForCausalLM.from_config(cfg).eval()


TYPES = ["llama", "mistral", "qwen2", "gemma3_text", "gpt2", "opt"]


@pytest.mark.parametrize("model_type", TYPES)
def test_table_locates_blocks_and_projections(model_type):
    model = make(model_type)
    spec = arch_spec(model)
    blocks = get_blocks(model)
    assert len(blocks) == 4
    hidden = model.config.hidden_size if model_type != "gpt2" else model.config.n_embd
    for path in list(spec.attn.values()) + list(spec.mlp.values()):
        proj = get_submodule(blocks[0], path)
        assert proj.weight.ndim == 2
        assert hidden in proj.weight.shape
    assert hasattr(get_submodule(blocks[1], spec.attn_module), "layer_idx")
    get_submodule(model, spec.embed)
    get_submodule(model, spec.final_norm)


@pytest.mark.parametrize("model_type", TYPES)
def test_set_blocks_matches_a_model_built_with_those_blocks(model_type):
    """Keeping blocks [0, 2, 3] equals a fresh 3-block model loaded with those blocks' weights."""
    model = make(model_type)
    keep = [0, 2, 3]
    spec = arch_spec(model)
    # reference: a model built natively with 3 blocks, weights copied block by block
    types = getattr(model.config, "layer_types", None)
    reference = make(model_type, n_layers=3, layer_types=[types[i] for i in keep] if types else None)
    prefix = spec.blocks + "."
    state = {}
    for name, value in model.state_dict().items():
        if name.startswith(prefix):
            idx, rest = name[len(prefix):].split(".", 1)
            if int(idx) in keep:
                state[f"{prefix}{keep.index(int(idx))}.{rest}"] = value
        else:
            state[name] = value
    reference.load_state_dict(state)

    blocks = get_blocks(model)
    set_blocks(model, [blocks[i] for i in keep], keep)
    assert getattr(model.config, spec.num_layers_attr) == 3
    assert [get_submodule(b, spec.attn_module).layer_idx for b in get_blocks(model)] == [0, 1, 2]
    if getattr(reference.config, "layer_types", None):
        assert model.config.layer_types == reference.config.layer_types

    ids = torch.randint(0, 96, (2, 10))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-5)


@pytest.mark.parametrize("model_type", TYPES)
def test_stand_in_block_and_cached_generation(model_type):
    """An identity stand-in drops a block exactly, also with a KV cache during generate()."""
    model = make(model_type)
    dropped = copy.deepcopy(model)
    blocks = get_blocks(dropped)
    set_blocks(dropped, [blocks[0], IdentityBlock(), blocks[2], blocks[3]], [0, 1, 2, 3])
    removed = copy.deepcopy(model)
    rb = get_blocks(removed)
    set_blocks(removed, [rb[0], rb[2], rb[3]], [0, 2, 3])
    ids = torch.randint(3, 96, (1, 6))
    with torch.no_grad():
        assert torch.allclose(dropped(input_ids=ids).logits, removed(input_ids=ids).logits, atol=1e-5)
        kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
        a = dropped.generate(ids, use_cache=True, **kw)
        b = dropped.generate(ids, use_cache=False, **kw)
    assert torch.equal(a, b)


def test_unknown_model_type_is_one_line_error():
    from scaleot.errors import ScaleOTError

    class Fake(nn.Module):
        class config:  # noqa: N801
            model_type = "mamba"

    with pytest.raises(ScaleOTError, match="unsupported model_type 'mamba'.*llama"):
        arch_spec(Fake())


@pytest.mark.parametrize("model_type", ["mistral", "qwen2", "gemma3_text"])
@pytest.mark.parametrize("method", ["uniform", "scaleot"])
def test_emulator_bundle_round_trip_beyond_llama(model_type, method, tmp_path, hf_tokenizer):
    """Built, saved and reloaded emulators give the same logits; gemma3 keeps each block's attention type."""
    from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
    from scaleot.models.emulator import load_emulator
    from tests.emulator_helpers import fake_importance

    model = make(model_type, n_layers=8)
    imp = fake_importance(tmp_path / "imp", model, [4, 2, 5, 3])
    cfg = (EmulatorConfig(method="uniform", keep=2, beta=0.5, diagnostic_blocks=0) if method == "uniform" else
           EmulatorConfig(method="scaleot", importance=str(imp), alpha=0.5, beta=0.5, diagnostic_blocks=0))
    bundle = build_emulator(model, cfg, tokenizer=hf_tokenizer)
    loaded = load_emulator(bundle.save(tmp_path / "emu"), device="cpu")
    sources = [e["source"] for e in loaded.info["layer_map"] if e["kind"] != "harmonizer"]
    if method == "uniform":
        assert loaded.model.config.num_hidden_layers == 6
    types = getattr(model.config, "layer_types", None)
    if model_type == "gemma3_text" and method == "uniform":
        assert loaded.model.config.layer_types == [types[s] for s in sources]
    ids = torch.randint(3, 40, (2, 20))  # past gemma3's sliding window of 8
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, bundle.model(ids).logits, atol=0, rtol=0)

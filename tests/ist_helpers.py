"""Shared pieces of the IST tests: tiny tasks and tiny models of every table architecture."""

from __future__ import annotations

import torch

from scaleot.data import MCExample
from tests.conftest import CharTokenizer

__all__ = ["CharTokenizer", "answer_loss", "plant_signal", "tiny_examples", "tiny_model"]

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"]


def answer_loss(model, batch: dict) -> torch.Tensor:
    """The fine-tuning loop's loss (:class:`scaleot.data_owner.finetune.loop.AnswerLoss`: mean NLL of the
    answer tokens) on a plain or a peft-wrapped causal LM."""
    from scaleot.data_owner.finetune.loop import AnswerLoss
    from scaleot.data_owner.tuners.ist.layer import base_model_of

    return AnswerLoss(base_model_of(model))(**batch)


def tiny_examples(n: int, seed: int = 0) -> list[MCExample]:
    """Deterministic 2-choice examples whose answer is a fixed function of the context."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        a, b = (int(x) for x in torch.randint(0, len(WORDS), (2,), generator=g))
        ctx = f"{WORDS[a]} {WORDS[b]} ->"
        gold = f" {WORDS[(a + b) % len(WORDS)]}{WORDS[a]}"
        other = f" {WORDS[(a + b + 1) % len(WORDS)]}{WORDS[b]}"
        label = int(torch.randint(0, 2, (1,), generator=g))
        choices = [gold, other] if label == 0 else [other, gold]
        out.append(MCExample(ctx, choices, label))
    return out


def tiny_model(model_type: str):
    """A tiny random causal LM of ``model_type`` (vocab 128, 4 blocks)."""
    import transformers as tf

    torch.manual_seed(0)
    common = dict(vocab_size=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if model_type == "gpt2":
        cfg = tf.GPT2Config(n_embd=32, n_layer=4, n_head=4, n_positions=256, **common)
        return tf.GPT2LMHeadModel(cfg)
    if model_type == "opt":
        cfg = tf.OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=4, num_attention_heads=4,
                           max_position_embeddings=256, word_embed_proj_dim=32, **common)
        return tf.OPTForCausalLM(cfg)
    cls_cfg = {"llama": (tf.LlamaConfig, tf.LlamaForCausalLM), "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
               "mistral": (tf.MistralConfig, tf.MistralForCausalLM)}[model_type]
    cfg = cls_cfg[0](hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=256, **common)
    return cls_cfg[1](cfg)


def plant_signal(model, tok, examples, block: int, steps: int = 80, lr: float = 3e-2):
    """Train LoRA of one block (all others exactly zero) so it carries all the signal.

    Returns:
        The batch of ``examples`` and the final loss on it.
    """
    from scaleot.data import PadCollator, encode_example
    from scaleot.data_owner.tuners.ist import peft_layers_by_block, peft_parameters

    with torch.no_grad():  # random tiny embeddings are too small for confident logits
        model.get_output_embeddings().weight.mul_(20)
    layers = peft_layers_by_block(model)
    for b, mods in layers.items():
        for mod in mods:
            for p in peft_parameters(mod):
                p.requires_grad_(b == block)
                if b != block:
                    torch.nn.init.zeros_(p)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    batch = PadCollator(0)([encode_example(e, tok) for e in examples])
    for _ in range(steps):
        loss = answer_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return batch, loss.item()

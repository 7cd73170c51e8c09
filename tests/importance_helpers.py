"""Tiny models and data for the importance tests."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(vocab_size: int = 128, layers: int = 6, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval()


def make_critical_and_identity(model: LlamaForCausalLM, critical: int, identity: int, scale: float = 4.0) -> None:
    """Block ``critical`` writes a large residual update; block ``identity`` writes nothing (exact identity).

    The LM head is sharpened (x10) so that the random model's predictions, and hence
    its blocks, matter; leave-one-out on this model ranks ``critical`` first (+0.5 nats)
    and ``identity`` last (exactly 0).
    """
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)
        crit = model.model.layers[critical]
        crit.self_attn.o_proj.weight.mul_(scale)
        crit.mlp.down_proj.weight.mul_(scale)
        ident = model.model.layers[identity]
        ident.self_attn.o_proj.weight.zero_()
        ident.mlp.down_proj.weight.zero_()


@torch.no_grad()
def sample_text(model: LlamaForCausalLM, n: int, length: int, seed: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """``[n, length]`` token ids sampled from the model itself.

    At temperature 1 the full model is the best predictor of this text in expectation,
    so removing any block that does something cannot lower the expected loss.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(model.config.vocab_size, (n, 1), generator=g)
    for _ in range(length - 1):
        logits = model(input_ids=x, use_cache=False).logits[:, -1] / temperature
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)
        x = torch.cat([x, nxt], 1)
    return x


def tiny_model_folder(root: Path) -> Path:
    """A tiny llama saved with the smollm2 tokenizer, plus a small text corpus; returns the model folder."""
    from scaleot.models import load_model

    _, tok = load_model("smollm2-135m")
    model = tiny_llama(vocab_size=len(tok), layers=6)
    folder = root / "tiny"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_corpus(root: Path) -> Path:
    words = ["the", "lord", "said", "unto", "moses", "go", "forth", "and", "speak", "to", "the", "people", "of", "the", "land", "that", "they", "may", "hear"]
    g = torch.Generator().manual_seed(0)
    paras = [" ".join(words[int(i)] for i in torch.randint(len(words), (60,), generator=g)) for _ in range(40)]
    path = root / "corpus.txt"
    path.write_text("\n\n".join(paras))
    return path


@contextlib.contextmanager
def single_thread():
    """Tiny models run much faster on one thread on a loaded machine (no OpenMP spinning)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)

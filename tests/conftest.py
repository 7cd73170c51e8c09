"""Shared fixtures: tiny random models (offline), tiny tasks, an isolated SCALEOT_HOME."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

VOCAB = 128


def tiny_llama_config(**overrides):
    from transformers import LlamaConfig

    kw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=256,
              tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    kw.update(overrides)
    return LlamaConfig(**kw)


@pytest.fixture
def seed():
    torch.manual_seed(0)
    return 0


@pytest.fixture
def tiny_llama(seed):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(tiny_llama_config()).eval()


class CharTokenizer:
    """A tiny, deterministic byte-level tokenizer (ids 3..127) with the HF call shape."""

    pad_token, eos_token, bos_token = "<pad>", "<eos>", "<bos>"
    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __call__(self, text, add_special_tokens=False, **kw):
        return {"input_ids": [3 + (b % (VOCAB - 3)) for b in text.encode()]}

    def encode(self, text, add_special_tokens=False, **kw) -> list[int]:
        return self(text)["input_ids"]

    def decode(self, ids, **kw) -> str:
        """Inverse of ``__call__`` on ASCII text; special ids as their token strings."""
        special = {self.pad_token_id: self.pad_token, self.bos_token_id: self.bos_token,
                   self.eos_token_id: self.eos_token}
        return "".join(special.get(i) or chr(i - 3) for i in ([ids] if isinstance(ids, int) else ids))


@pytest.fixture
def char_tokenizer():
    return CharTokenizer()


def _build_hf_tokenizer():
    """A real ``PreTrainedTokenizerFast`` (word-level, offline) for lm-eval and save_pretrained."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<bos>", "<eos>", "<unk>"] + [chr(c) for c in range(97, 123)] + \
        ["yes", "no", "the", "cat", "dog", "is", "Q:", "A:", "red", "blue", "green", "sky", "grass"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>")


@pytest.fixture
def hf_tokenizer():
    return _build_hf_tokenizer()


@pytest.fixture
def tiny_task_file(tmp_path):
    """A JSONL task with 40 two-choice examples whose answer is learnable (colour words)."""
    rows = []
    for i in range(40):
        thing, answer = [("sky", "blue"), ("grass", "green")][i % 2]
        wrong = "red"
        choices = [f" {answer}", f" {wrong}"] if i % 3 else [f" {wrong}", f" {answer}"]
        rows.append({"context": f"Q: the {thing} is A:", "choices": choices,
                     "label": choices.index(f" {answer}")})
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def scaleot_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SCALEOT_HOME", str(home))
    return home

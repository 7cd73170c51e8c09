"""Task examples for fine-tuning: ``context + gold answer`` with loss on the answer only.

Labels are ``-100`` on the context tokens (and on padding), so the LM loss is the
negative log-likelihood of the answer given the context, the same quantity lm-eval
scores at evaluation. Batches are padded dynamically to their longest example.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scaleot.data.tasks import MCExample
from scaleot.data.text import text_prefix

IGNORE_INDEX = -100


def encode_example(ex: MCExample, tokenizer, max_length: int = 256) -> dict[str, list[int]]:
    """Token ids and labels for ``context + choices[label]`` (context truncated from the left).

    The tokenizer's leading special tokens (Gemma's ``<bos>``, see :func:`text_prefix`) open the
    sequence, as they do when the evaluator encodes the same context.
    """
    prefix = text_prefix(tokenizer)
    room = max_length - len(prefix)
    ctx = tokenizer(ex.context, add_special_tokens=False)["input_ids"]
    ans = tokenizer(ex.choices[ex.label], add_special_tokens=False)["input_ids"]
    ans = ans[:room]
    ctx = ctx[max(0, len(ctx) - (room - len(ans))):] if len(ctx) + len(ans) > room else ctx
    return {"input_ids": prefix + ctx + ans, "labels": [IGNORE_INDEX] * (len(prefix) + len(ctx)) + ans}


@dataclass
class PadCollator:
    """Right-pad a list of encoded examples to the longest one in the batch."""

    pad_token_id: int

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

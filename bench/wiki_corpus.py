"""A modern-English generic corpus for the stage-1 corpus investigation (issue 7).

KJV (the default harmonizer corpus) is 17th-century English; the data owner's tasks are
modern. The only modern encyclopedic text on this offline machine is the Wikipedia
evidence quoted by BIG-bench's ``vitaminc_fact_verification`` (not one of the evaluated
tasks). This writes its unique evidence sentences, one document per article title, as a
``.jsonl`` corpus that ``scaleot importance --corpus`` reads.

Usage::

    python bench/wiki_corpus.py --out runs/wiki_vitaminc.jsonl
"""

from __future__ import annotations

import argparse
import json
import os

from scaleot.data.bigbench import load_bigbench_task


def wiki_documents() -> list[str]:
    by_title: dict[str, list[str]] = {}
    for ex in load_bigbench_task("vitaminc_fact_verification"):
        text = ex.context.split("Passage: ")[-1].split("\nClaim:")[0]
        title, _, sentence = text.partition(": ")
        if not sentence:
            title, sentence = "", title
        title = title.strip()
        sents = by_title.setdefault(title, [])
        sentence = sentence.strip()
        if sentence and sentence not in sents:
            sents.append(sentence)
    return [f"{t}. " + " ".join(s) if t else " ".join(s) for t, s in by_title.items() if s]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    docs = wiki_documents()
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    os.replace(tmp, args.out)
    print(f"{len(docs)} documents, {sum(len(d.split()) for d in docs)} words -> {args.out}")


if __name__ == "__main__":
    main()

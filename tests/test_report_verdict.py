"""The report's verdict: gains over zero-shot with paired standard errors, and readable labels."""

from __future__ import annotations

import random

from scaleot.evaluation.offsite import paired_stderr, summarise
from scaleot.report.plots import label_layout
from scaleot.report.verdict import difference, headline_table, verdict


def _row(correct: list[int]) -> dict:
    n, p = len(correct), sum(correct) / len(correct)
    return {"acc": p, "acc_stderr": (p * (1 - p) / (n - 1)) ** 0.5, "n": n, "correct": correct}


def _doc(plug_gain: float, n: int = 400, seed: int = 0) -> dict:
    rng = random.Random(seed)
    zs = [int(rng.random() < 0.4) for _ in range(n)]
    plug = [1 if (z or rng.random() < plug_gain) else 0 for z in zs]  # improves on zero-shot, never worse
    ft = [1 if (p or rng.random() < 0.05) else 0 for p in plug]
    emu = [int(rng.random() < 0.3) for _ in range(n)]
    rows = {"t": {"Full ZS": _row(zs), "Emu ZS": _row(emu), "FT": _row(ft), "Emu FT": _row(emu), "Plug-in": _row(plug)}}
    return summarise(rows)


def test_difference_is_paired_and_matches_reference():
    doc = _doc(0.2)
    d = difference(doc, "Plug-in", "Full ZS")
    r = doc["rows"]["t"]
    assert abs(d["acc"] - (r["Plug-in"]["acc"] - r["Full ZS"]["acc"])) < 1e-12
    assert d["paired"] and abs(d["stderr"] - paired_stderr(r["Plug-in"]["correct"], r["Full ZS"]["correct"])) < 1e-12
    assert difference({"tasks": ["t"], "rows": {"t": {}}}, "Plug-in", "Full ZS") is None


def test_verdict_says_transfer_only_beyond_noise():
    assert verdict(_doc(0.2)).startswith("the adapter transferred: +")
    assert verdict(_doc(0.0)).startswith("no transfer beyond noise: +0.0 ± 0.0")
    worse = _doc(0.0)
    worse["rows"]["t"]["Plug-in"] = _row([0] * 400)
    assert verdict(worse).startswith("the plug-in is worse than zero-shot: -")
    table = headline_table({"a": _doc(0.2), "b": _doc(0.0)})
    assert table.count("\n") == 3 and "| a | +" in table and "no transfer beyond noise" in table


def test_labels_never_overlap():
    pts = [(30.0, 37.0, "uniform"), (30.0, 37.0, "crash"), (30.2, 37.3, "drop"), (45.0, 50.0, "scaleot")]
    out = label_layout(pts)
    texts = [t for _, t, _ in out]
    assert "uniform = crash = drop" in texts and "scaleot" in texts and len(out) == 2
    close = label_layout([(30.0, 37.0, "a"), (31.5, 37.5, "b"), (33.0, 36.6, "c")])
    offsets = [dy for _, _, dy in close]
    assert len(set(offsets)) == 3  # three nearby labels, three heights

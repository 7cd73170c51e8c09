"""bench/suite.py's checks of itself (``pytest bench``)."""

from __future__ import annotations

import json

import pytest


def test_a_configuration_runs_on_the_chosen_suite_only(tmp_path, monkeypatch):
    """Without suite.json (and without --tasks) a configuration is refused before any model
    loads: it used to fall back to every built-in task, three times the work, silently."""
    import bench.suite as suite

    monkeypatch.setattr(suite, "SuiteLab", lambda args: pytest.fail("no model may load"))
    monkeypatch.setattr("sys.argv", ["suite", "--out", str(tmp_path), "--config", '{"method": "drop"}'])
    with pytest.raises(SystemExit, match="suite.json is missing"):
        suite.main()
    ran = []

    class Lab:
        def __init__(self, args):
            pass

        def do(self, spec):
            ran.append(spec["task"])

    monkeypatch.setattr(suite, "SuiteLab", Lab)
    (tmp_path / "suite.json").write_text(json.dumps({"suite": ["gen:letters", "pkg:rhyme"]}))
    suite.main()
    assert sorted(set(ran)) == ["gen:letters", "pkg:rhyme"]

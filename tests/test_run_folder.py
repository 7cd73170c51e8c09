"""One run folder for every training loop: checkpoints carry the options, a resume made
with other options is refused by every loop (fine-tuning, IST through it, distillation), and
the log reads like one run."""

from __future__ import annotations

import json

import pytest
import torch

from scaleot.errors import ScaleOTError
from scaleot.run_folder import RunFolder
from tests.finetune_helpers import one_thread, tiny_world  # noqa: F401


def test_save_resume_and_refuse_other_options(tmp_path):
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w], lr=0.1)
    w.grad = torch.ones(3)
    opt.step()
    folder = RunFolder(tmp_path, {"lr": 0.1, "steps": 4}, may_change=("steps",))
    with pytest.raises(ScaleOTError, match="no checkpoint"):
        folder.resume()
    assert folder.resume(required=False) is None
    folder.save(2, {"w": w}, opt, {"epoch": 1})
    weights, state = RunFolder(tmp_path, {"lr": 0.1, "steps": 8}, may_change=("steps",)).resume()
    assert torch.equal(weights["w"], w.detach()) and state["epoch"] == 1 and state["step"] == 2
    with pytest.raises(ScaleOTError, match=r"options differ \(lr\)"):
        RunFolder(tmp_path, {"lr": 0.2, "steps": 4}).resume()
    with pytest.raises(ScaleOTError, match=r"options differ \(seed\)"):
        RunFolder(tmp_path, {"lr": 0.1, "steps": 4, "seed": 1}, may_change=("steps",)).resume()


def test_log_continues_after_the_checkpoint(tmp_path):
    folder = RunFolder(tmp_path, {})
    folder.open_log()
    for step in range(1, 6):
        folder.log({"step": step, "loss": float(step)})
    folder.close()
    folder.open_log(resume_step=3)
    folder.log({"step": 4, "loss": 40.0})
    folder.close()
    steps = [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert list((tmp_path / "tb").iterdir())
    RunFolder(tmp_path, {}).open_log()  # a fresh run starts a fresh log
    assert (tmp_path / "log.jsonl").read_text() == ""


def test_finetune_refuses_a_resume_with_other_options(tiny_world, one_thread, tmp_path):  # noqa: F811
    from scaleot.data_owner.finetune import FinetuneConfig
    from scaleot.recipes.finetune import FinetuneRecipe

    root, _, task, emu = tiny_world
    common = dict(n_train=16, n_val=4, n_test=16, batch_size=4, val_limit=4, checkpoint_every=2)
    FinetuneRecipe.of(tmp_path / "a", str(task), FinetuneConfig(max_steps=2, **common), device="cpu", emulator=emu,
                   run_dir=tmp_path / "run", progress=False).run()
    with pytest.raises(ScaleOTError, match=r"options differ \(lr\)"):
        FinetuneRecipe.of(tmp_path / "b", str(task), FinetuneConfig(max_steps=2, lr=1e-3, **common), device="cpu", emulator=emu,
                       run_dir=tmp_path / "run", resume=True, progress=False).run()


def test_distillation_refuses_a_resume_with_other_options(tmp_path, hf_tokenizer, monkeypatch):
    import scaleot.model_owner.emulator.distill as distill
    from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
    from tests.emulator_helpers import make_model
    from tests.test_emulator_bundle import fake_crash_text

    monkeypatch.setattr(distill, "corpus_splits", fake_crash_text)
    model = make_model()

    def cfg(**kw):
        base = dict(method="uniform-kd", keep=2, kd_steps=2, kd_batch=4, block_size=16, kd_checkpoint_every=2,
                    kd_run_dir=str(tmp_path / "kd"))
        return EmulatorConfig(**dict(base, **kw))

    build_emulator(model, cfg(), tokenizer=hf_tokenizer)
    build_emulator(model, cfg(kd_steps=3), tokenizer=hf_tokenizer, resume=True)  # more steps: allowed
    with pytest.raises(ScaleOTError, match=r"options differ \(kd_lr"):
        build_emulator(model, cfg(kd_lr=1e-3), tokenizer=hf_tokenizer, resume=True)


def test_ist_finetune_refuses_a_resume_with_other_ist_options(tmp_path):
    from scaleot.data import TaskSplits
    from scaleot.data_owner.finetune import FinetuneConfig
    from scaleot.data_owner.finetune.loop import train
    from scaleot.data_owner.finetune.trainable import apply_lora
    from scaleot.data_owner.tuners.ist import ISTConfig, make_controller
    from tests.ist_helpers import CharTokenizer, tiny_examples, tiny_model

    splits = TaskSplits("tiny", tiny_examples(8), tiny_examples(4, 1), tiny_examples(4, 2))

    def run(ist, resume=False):
        cfg = FinetuneConfig(method="ist", ist=ist, max_steps=2, batch_size=4, lr=1e-2, val_limit=4)
        model = tiny_model("llama")
        hooks = make_controller(apply_lora(model, [0, 1, 2, 3], cfg), [0, 1, 2, 3], cfg, tokenizer=CharTokenizer())
        train(model, CharTokenizer(), splits, cfg, tmp_path, resume=resume, step_controller=hooks, progress=False,
              device="cpu")

    run(ISTConfig(T=2))
    with pytest.raises(ScaleOTError, match=r"options differ \(ist\)"):
        run(ISTConfig(T=3), resume=True)

"""IST (docs/method.md section 4): selection, importance learning, sparsity, suppression, resume."""

from __future__ import annotations

import math

import pytest
import torch

from scaleot.data_owner.tuners.ist import (
    ISTConfig,
    ISTController,
    ISTStepController,
    lora_config_for,
    peft_layers_by_block,
    save_importance,
    suppressed,
)
from scaleot.errors import ConfigError
from tests.ist_helpers import CharTokenizer, answer_loss, plant_signal, tiny_examples, tiny_model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not stall on a busy machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _peft(model_type="llama", dora=False, blocks=None):
    from peft import get_peft_model

    model = tiny_model(model_type)
    return get_peft_model(model, lora_config_for(model, use_dora=dora, blocks=blocks))


def _batch(n: int = 4) -> dict:
    from scaleot.data import PadCollator, encode_example

    return PadCollator(0)([encode_example(e, CharTokenizer()) for e in tiny_examples(n)])


def _one_step(model, ctl: ISTController, optimizer, batch: dict, step: int) -> list[int]:
    """One optimizer step in the order the fine-tuning loop drives a step controller
    (:mod:`scaleot.data_owner.finetune.loop`): select, backward, AdamW step, release."""
    chosen = ctl.before_step(step)
    answer_loss(model, batch).backward()
    ctl.after_backward(step)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ctl.after_step(step)
    return chosen


def _reference_inclusion(weights: list[float], n: int, draws: int, seed: int = 1) -> list[float]:
    """Independent sequential weighted sampling without replacement (pure Python)."""
    import random

    rng = random.Random(seed)
    counts = [0] * len(weights)
    for _ in range(draws):
        pool = list(range(len(weights)))
        for _ in range(n):
            w = [weights[i] for i in pool]
            pick = rng.choices(pool, weights=w)[0]
            counts[pick] += 1
            pool.remove(pick)
    return [c / draws for c in counts]


def test_config_validates_everything_at_once():
    with pytest.raises(ConfigError) as err:
        ISTConfig(n_update=0, K=0, gamma=1.5, sampling="best", credit="blame")
    assert len(err.value.problems) == 5
    assert any("credit" in p for p in err.value.problems)
    assert ISTConfig(credit="COUNT").credit == "count"
    assert ISTConfig().resolve(30) == (8, 15)


@pytest.mark.parametrize("sampling", ["ist", "rst"])
def test_selection_frequencies_follow_scores(sampling):
    model = _peft()  # 4 blocks -> n_update = 1... use 0.5 to draw 2 of 4
    ctl = ISTController(model, ISTConfig(n_update=0.5, sampling=sampling, seed=3))
    ctl._scores = torch.tensor([-2.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    draws = 4000
    for step in range(1, draws + 1):
        chosen = ctl.before_step(step)
        assert len(chosen) == 2 == len(set(chosen))
        ctl.after_step(step)
    freq = (ctl.counts.double() / draws).tolist()
    if sampling == "rst":
        ref = [0.5] * 4
    else:
        ref = _reference_inclusion([1 - 1 / (1 + math.exp(-s)) for s in ctl._scores.tolist()], 2, draws)
        assert freq == sorted(freq, reverse=True)  # low score = trained more
    assert freq == pytest.approx(ref, abs=0.04)


def test_signal_layer_becomes_most_important(seed):
    model = _peft()
    model.train()
    tok, examples = CharTokenizer(), tiny_examples(8)
    batch, loss = plant_signal(model, tok, examples, block=2, steps=40, lr=0.1)
    # gamma = 0: after the final RMSNorm a large learned delta is nearly scale-free, so
    # the test removes the suppressed adapters outright to make block 2's role unambiguous.
    with torch.no_grad(), suppressed(peft_layers_by_block(model)[2], 0.0):
        assert answer_loss(model, batch).item() > loss + 0.5  # block 2 carries the signal
    # default eta and reward (normalized advantages): the scores separate in 30 updates.
    ctl = ISTController(model, ISTConfig(n_update=0.25, T=1, gamma=0.0, seed=0))
    for step in range(1, 31):
        ctl.before_step(step)
        ctl.after_step(step)
        ctl.maybe_update_importance(step, model, batch)
    imp = ctl.importance()
    assert max(imp, key=imp.get) == 2
    ctl.counts.zero_()
    for step in range(31, 231):
        ctl.before_step(step)
        ctl.after_step(step)
    assert int(ctl.counts.argmax()) == ctl.blocks.index(2)


@pytest.mark.parametrize(("model_type", "dora"), [("llama", False), ("llama", True), ("gpt2", False),
                                                  ("gpt2", True), ("opt", False), ("qwen2", True)])
def test_unselected_layers_untouched_and_stateless(model_type, dora):
    model = _peft(model_type, dora=dora)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    optimizer = torch.optim.AdamW(lora, lr=1e-2, weight_decay=0.1)  # decay moves even a zero-grad weight
    ctl = ISTController(model, ISTConfig(n_update=0.5, T=0), optimizer)
    before = [[p.detach().clone() for p in ps] for ps in ctl.params]
    selected = set(_one_step(model, ctl, optimizer, _batch(), 1))
    for pos, block in enumerate(ctl.blocks):
        for p, old in zip(ctl.params[pos], before[pos], strict=True):
            if block not in selected:
                assert torch.equal(p, old), f"block {block} changed without being selected"
                assert p.grad is None and p not in optimizer.state
        if block in selected:
            assert any(not torch.equal(p, old) for p, old in zip(ctl.params[pos], before[pos], strict=True))
    assert all(p.requires_grad and p.grad is None for ps in ctl.params for p in ps)  # between steps


def test_unselected_branch_saves_no_activations():
    """The autograd graph keeps no tensor for unselected layers' LoRA branches."""
    batch = _batch()

    def saved_bytes(model):
        seen = {}
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}

        def pack(t):
            if t.untyped_storage().data_ptr() not in params:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            answer_loss(model, batch)
        return sum(seen.values())

    model = _peft()
    ctl = ISTController(model, ISTConfig(n_update=0.25))
    ctl.before_step(1)
    sparse = saved_bytes(model)
    for ps in ctl.params:
        for p in ps:
            p.requires_grad_(True)
    dense = saved_bytes(model)
    assert sparse < dense


@pytest.mark.parametrize("dora", [False, True])
def test_suppression_scales_peft_output_and_restores(dora):
    model = _peft(dora=dora).eval()
    layer = peft_layers_by_block(model)[1][0]
    for p in layer.lora_B.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(3, layer.in_features)
    before = dict(layer.scaling)
    with torch.no_grad():
        full = layer(x)
        with model.disable_adapter():
            base = layer(x)
        with suppressed([layer], 0.25):
            supp = layer(x)
    assert layer.scaling == before
    if not dora:
        torch.testing.assert_close(supp - base, 0.25 * (full - base))
    else:
        assert (supp - base).norm() < (full - base).norm()


def test_emulator_style_partial_lora_maps_blocks():
    """LoRA only on some blocks (the data owner's adapter blocks): IST's layers are those."""
    model = _peft(blocks=[0, 3])
    ctl = ISTController(model, ISTConfig())
    assert ctl.blocks == [0, 3] and ctl.n_update == 1
    assert len(ctl.before_step(1)) == 1


def test_step_controller_in_the_finetune_loop(tmp_path):
    """``make_controller`` drives the shared loop (data owner path) and resumes exactly."""
    from scaleot.data import TaskSplits
    from scaleot.data_owner.finetune.config import FinetuneConfig
    from scaleot.data_owner.finetune.loop import train
    from scaleot.data_owner.finetune.trainable import apply_lora
    from scaleot.data_owner.tuners.ist import make_controller

    splits = TaskSplits("tiny", tiny_examples(16), tiny_examples(4, 1), tiny_examples(4, 2))
    cfg = FinetuneConfig(method="ist", max_steps=4, batch_size=4, checkpoint_every=2, lr=1e-2,
                         val_limit=4)

    def run(folder, resume=False, stop=None):
        model = tiny_model("llama")
        peft_model = apply_lora(model, [1, 2], cfg)
        hooks = make_controller(peft_model, [1, 2], cfg, tokenizer=CharTokenizer(), ist_config=ISTConfig(T=2))
        c = cfg if stop is None else FinetuneConfig(**dict(cfg.to_dict(), max_steps=stop))
        train(model, CharTokenizer(), splits, c, folder, resume=resume, step_controller=hooks, progress=False,
              device="cpu")
        return hooks

    full = run(tmp_path / "a")
    assert full.controller.blocks == [1, 2] and full.controller.step == 4  # one epoch of 16 at batch 4
    assert any(s != 0 for s in full.scores().values())
    import json

    logged = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    trajectory = [r for r in logged if "ist/score_block_1" in r]  # also in TensorBoard (float values)
    assert [r["step"] for r in trajectory] == [2, 4]
    record = save_importance(full.controller, tmp_path / "adapter")
    assert record["trajectory"]["steps"] == [2, 4]
    assert record["trajectory"]["scores"]["1"][-1] == full.scores()[1]
    state = full.state_dict()
    again = ISTStepController(full.model, ISTConfig(T=2), CharTokenizer())
    again.load_state_dict(state)
    assert again.scores() == full.scores()
    assert again.controller.history == full.controller.history


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_normalized_advantages_move_scores_whatever_the_loss_scale(scale):
    """Probe losses enter as (r - mean r) / std r: the same update at any loss scale, none when all equal."""
    model = _peft()

    def run(losses):
        it = iter(losses)
        ctl = ISTController(model, ISTConfig(n_update=0.5, K=3, eta=1.0, seed=0))
        ctl.update_importance(model, {}, lambda m, b: torch.tensor(next(it)))
        return ctl

    ctl = run([scale * v for v in (1.0, 2.0, 4.0)])
    reference = run([1.0, 2.0, 4.0])
    torch.testing.assert_close(ctl._scores, reference._scores, rtol=2e-3, atol=1e-6)  # std + 1e-6 guard
    assert ctl._scores.abs().max() > 0.1  # O(eta p(1-p)), not O(loss differences)
    assert ctl.history == [(0, ctl._scores.tolist())]
    assert torch.equal(run([3.0, 3.0, 3.0])._scores, torch.zeros(4, dtype=torch.float64))


def test_backprop_stops_at_the_lowest_selected_block():
    """Blocks below the lowest selected one get inputs without grad (no graph, no saved
    activations); embeddings, head and unselected LoRA hold no gradient or optimizer state."""
    from scaleot.models import get_blocks

    model = _peft()
    opt = torch.optim.AdamW([p for ps in ISTController(model, ISTConfig()).params for p in ps], lr=1e-2)
    ctl = ISTController(model, ISTConfig(n_update=0.5, depth=0.5, T=0), opt)
    seen = {}
    blocks = get_blocks(model.get_base_model())
    for i, block in enumerate(blocks):
        block.register_forward_pre_hook(lambda mod, args, i=i: seen.__setitem__(i, args[0].requires_grad))
    batch = _batch()
    for step in range(1, 21):
        chosen = ctl.before_step(step)
        assert set(chosen) <= {2, 3}  # depth 0.5: only the top half of the 4 blocks
        answer_loss(model, batch).backward()
        low = min(chosen)
        assert [seen[i] for i in range(len(blocks))] == [i > low for i in range(len(blocks))]
        with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
        assert with_grad == {n for n, p in model.named_parameters()
                             if any(p is q for pos in ctl.selected for q in ctl.params[pos])}
        opt.step()
        opt.zero_grad(set_to_none=True)
        ctl.after_step(step)
    outside = [p for pos in (0, 1) for p in ctl.params[pos]]
    assert not any(p in opt.state for p in outside)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


def test_count_credit_divides_each_layers_share_by_its_training_count():
    """credit=count: the same probes move layer i's score by (mean(c)+1)/(c_i+1) times the set update."""
    model = _peft()  # 4 LoRA layers
    batch = {"input_ids": torch.randint(0, 50, (2, 6))}

    def loss_fn(m, b):  # deterministic, differs per suppressed set
        return m(**b, labels=b["input_ids"]).loss

    with torch.no_grad():  # move the LoRA B matrices off zero so suppression changes the loss
        for layers in peft_layers_by_block(model).values():
            for layer in layers:
                for p in layer.lora_B.parameters():
                    p.normal_(0, 0.5)
    moved = {}
    for credit in ("set", "count"):
        ctl = ISTController(model, ISTConfig(n_update=0.5, K=4, credit=credit, seed=5))
        ctl.counts = torch.tensor([0, 1, 3, 8])
        moved[credit] = ctl.update_importance(model, batch, loss_fn)
    w = (torch.tensor(3.0) + 1) / (torch.tensor([0.0, 1, 3, 8]) + 1)  # mean count 3
    assert moved["set"].abs().sum() > 0
    torch.testing.assert_close(moved["count"], moved["set"] * w.double())
    with pytest.raises(ConfigError, match="credit"):
        ISTConfig(credit="equal")


def _plant_gradients(ctl: ISTController, norms: dict[int, float]) -> None:
    """Give each selected layer's PEFT parameters a gradient of total norm ``norms[position]``."""
    for pos in ctl.selected:
        params = ctl.params[pos]
        for p in params:
            p.grad = torch.zeros_like(p)
        params[0].grad.view(-1)[0] = norms[pos]


def test_grad_probe_scores_are_centered_log_gradient_norms():
    """probe=grad: per observation m <- decay m + (1 - decay) log|g| (first one sets m);
    every T steps s = -eta (m - mean m) over the observed layers, 0 for the rest; checked
    against a pure-Python reference, and the largest gradients end up trained most."""
    model = _peft()  # 4 LoRA layers
    cfg = ISTConfig(n_update=0.5, probe="grad", T=2, eta=1.5, grad_decay=0.5, seed=0)
    ctl = ISTController(model, cfg)
    planted = {0: 1.0, 1: 2.0, 2: 50.0, 3: 0.5}
    ref: dict[int, float] = {}
    for step in range(1, 41):
        ctl.before_step(step)
        norms = {pos: planted[pos] * (1 + 0.01 * step) for pos in ctl.selected}
        _plant_gradients(ctl, norms)
        ctl.after_backward(step)
        for pos, g in norms.items():
            ref[pos] = 0.5 * ref[pos] + 0.5 * math.log(g) if pos in ref else math.log(g)
        for ps in ctl.params:
            for p in ps:
                p.grad = None
        ctl.after_step(step)
        updated = ctl.maybe_update_importance(step)
        assert updated == (step % 2 == 0)
        if step == 2:  # after one step only the first selection is seen: the others score 0
            seen = set(ref)
            mean = sum(ref.values()) / len(ref)
            expect = [-1.5 * (ref[i] - mean) if i in seen else 0.0 for i in range(4)]
            assert ctl._scores.tolist() == pytest.approx(expect)
    mean = sum(ref.values()) / len(ref)
    assert sorted(ref) == [0, 1, 2, 3]
    assert ctl.grad_log.tolist() == pytest.approx([ref[i] for i in range(4)])
    assert ctl._scores.tolist() == pytest.approx([-1.5 * (ref[i] - mean) for i in range(4)])
    assert len(ctl.history) == 20
    imp = ctl.importance()
    assert max(imp, key=imp.get) == 2 and min(imp, key=imp.get) == 3
    ctl.counts.zero_()
    for step in range(41, 241):
        ctl.before_step(step)
        ctl.after_step(step)
    assert int(ctl.counts.argmax()) == 2
    # the gradient averages are part of the state: a restored controller continues identically
    again = ISTController(model, cfg)
    again.load_state_dict(ctl.state_dict())
    assert torch.equal(again.grad_log, ctl.grad_log) and torch.equal(again.grad_seen, ctl.grad_seen)


def test_grad_probe_ignores_rst_and_layers_without_gradients():
    model = _peft()
    rst = ISTController(model, ISTConfig(n_update=0.5, probe="grad", sampling="rst"))
    rst.before_step(1)
    _plant_gradients(rst, dict.fromkeys(range(4), 3.0))
    rst.after_backward(1)
    assert not rst.grad_seen.any() and not rst.maybe_update_importance(5)
    model.zero_grad(set_to_none=True)
    ctl = ISTController(model, ISTConfig(n_update=0.5, probe="grad"))
    ctl.before_step(1)  # no backward reached the adapters: nothing is observed
    ctl.after_backward(1)
    assert not ctl.grad_seen.any()
    ctl.update_from_gradients()
    assert torch.equal(ctl._scores, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ConfigError) as err:
        ISTConfig(probe="hessian", grad_decay=1.0)
    assert len(err.value.problems) == 2


@pytest.mark.parametrize("probe", ["suppress", "grad"])
def test_grad_probe_in_the_finetune_loop_resumes_exactly(tmp_path, probe):
    """Through the product loop: probe grad reads gradients after every backward, needs no
    validation split for probes, logs its trajectory, and a resumed run equals the uninterrupted one
    (scores, counts, LoRA weights, the logged losses; its importance record is the full run's)."""
    from scaleot.data import TaskSplits
    from scaleot.data_owner.finetune.config import FinetuneConfig
    from scaleot.data_owner.finetune.loop import train
    from scaleot.data_owner.finetune.trainable import apply_lora
    from scaleot.data_owner.tuners.ist import make_controller
    from scaleot.errors import ScaleOTError

    splits = TaskSplits("tiny", tiny_examples(24), tiny_examples(4, 1), tiny_examples(4, 2))
    cfg = FinetuneConfig(method="ist", max_steps=6, batch_size=4, checkpoint_every=3, lr=1e-2,
                         val_limit=4)
    ist = ISTConfig(T=2, n_update=0.5, probe=probe)

    def run(folder, resume=False, stop=None):
        model = tiny_model("llama")
        peft_model = apply_lora(model, [0, 1, 2, 3], cfg)
        hooks = make_controller(peft_model, [0, 1, 2, 3], cfg, tokenizer=CharTokenizer(), ist_config=ist)
        if stop is not None:  # interrupted after optimizer step `stop` (the checkpoint is at 3)
            after = hooks.after_step

            def after_step(step):
                after(step)
                if step + 1 == stop:
                    raise KeyboardInterrupt
            hooks.after_step = after_step
        train(model, CharTokenizer(), splits, cfg, folder, resume=resume, step_controller=hooks, progress=False,
              device="cpu")
        return hooks

    full = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop=5)
    resumed = run(tmp_path / "b", resume=True)
    assert full.controller.step == resumed.controller.step == 6
    assert torch.equal(full.controller._scores, resumed.controller._scores)
    assert full.controller.history == resumed.controller.history and len(full.controller.history) == 3
    assert torch.equal(full.controller.grad_log, resumed.controller.grad_log)
    assert torch.equal(full.controller.counts, resumed.controller.counts)
    assert any(s != 0 for s in full.scores().values())
    for (n, p), (m, q) in zip(full.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        assert n == m and torch.equal(p, q), n
    import json

    def losses(folder):
        return [(r["step"], r["loss"]) for r in map(json.loads, (folder / "log.jsonl").read_text().splitlines())
                if "loss" in r]
    assert losses(tmp_path / "a") == losses(tmp_path / "b") and len(losses(tmp_path / "a")) == 6
    assert save_importance(resumed.controller, tmp_path / "adapter", plot=False) == \
        save_importance(full.controller, tmp_path / "adapter_full", plot=False)
    if probe == "grad":
        assert full.controller.grad_seen.any()
        seen = full.controller.grad_seen
        m = full.controller.grad_log
        expect = torch.where(seen, -(m - m[seen].mean()), torch.zeros_like(m))
        torch.testing.assert_close(full.controller._scores, expect)
    else:
        assert not full.controller.grad_seen.any()
    no_val = TaskSplits("tiny", tiny_examples(24), [], tiny_examples(4, 2))
    hooks = make_controller(apply_lora(tiny_model("llama"), [0, 1, 2, 3], cfg), [0, 1, 2, 3], cfg,
                            tokenizer=CharTokenizer(), ist_config=ist)
    opt = torch.optim.AdamW([p for ps in hooks.controller.params for p in ps])
    if probe == "grad":
        hooks.bind(opt, hooks.model, no_val)  # gradients need no probe batches
    else:
        with pytest.raises(ScaleOTError, match="validation split"):
            hooks.bind(opt, hooks.model, no_val)

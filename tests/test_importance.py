"""Dynamic LayerReplace: estimator correctness, resume, sampling, advantages."""

import pytest
import torch

from scaleot.errors import ScaleOTError
from scaleot.model_owner.importance import (
    ImportanceConfig,
    ImportanceTrainer,
    advantages,
    discard_grads,
    groups,
    leave_one_out,
    sample_configuration,
    spearman,
)
from tests.importance_helpers import (
    make_critical_and_identity,
    sample_text,
    single_thread,
    tiny_llama,
)

TINY = dict(n_bottom=1, n_top=1, block_size=24, batch_size=8, score_batch_size=8, autocast="none",
            checkpoint_every=0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def rigged():
    """Tiny llama with block 2 critical and block 3 an exact identity, and text it fits best."""
    model = tiny_llama(layers=6, seed=1)
    make_critical_and_identity(model, critical=2, identity=3)
    text = sample_text(model, 96, 24, seed=0)
    return model, text[:64], text[64:]


def test_sampling_groups_keep_about_half():
    g = torch.Generator().manual_seed(0)
    p = torch.full((10,), 0.5)
    assert [len(r) for r in groups(10, 4)] == [4, 4, 2]
    counts = torch.zeros(10)
    for _ in range(400):
        keep = sample_configuration(p, 4, g)
        assert keep[:4].sum() == 2 and keep[4:8].sum() == 2 and keep[8:].sum() == 1
        counts += keep
    assert ((counts / 400 - 0.5).abs() < 0.1).all()
    # Importance-aware: u_i ~ U(0, p_i), so a block with p near 1 is mostly kept, near 0 almost never.
    p = torch.tensor([0.99, 0.5, 0.5, 0.01])
    kept = torch.stack([sample_configuration(p, 4, g) for _ in range(300)]).float().mean(0)
    assert kept[0] > 0.75 > 0.25 > kept[3] and kept[0] > kept[1] > kept[3]


def test_advantages_sign_and_scaling():
    losses = torch.tensor([5.0, 6.0, 7.0])
    for reward in ("normalized", "neg_loss", "exp"):
        a = advantages(losses, reward)
        assert a[0] > 0 > a[2] and abs(float(a.sum())) < 1e-12
    torch.testing.assert_close(advantages(losses, "normalized").std(unbiased=False), torch.tensor(1.0, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(advantages(losses, "exp"), torch.exp(-losses.double()) - torch.exp(-losses.double()).mean())


@pytest.mark.parametrize("variant", ["replace", "drop"])
def test_critical_block_first_identity_block_last(rigged, variant):
    model, train, held = rigged
    cfg = ImportanceConfig(steps=150, variant=variant, seed=0, **TINY)  # default reward, eta, N_g, N_c
    trainer = ImportanceTrainer(model, train, held, cfg, progress=False)
    trainer.train()
    trainer.close()
    ranking = trainer.ranking()
    assert ranking[0] == 2, (ranking, trainer.scores)
    assert ranking[-1] == 3, (ranking, trainer.scores)
    # The reference agrees on the rigged blocks.
    loo = leave_one_out(model, held, [1, 2, 3, 4])
    assert loo["ranking"][0] == 2 and abs(loo["delta"][3]) < 1e-6
    assert len(model.model.layers) == 6 and not any(p.requires_grad is None for p in model.parameters())


def test_resume_equals_uninterrupted(rigged, tmp_path):
    model, train, held = rigged
    full = ImportanceTrainer(model, train, held, ImportanceConfig(steps=6, seed=3, **TINY), progress=False)
    full.train()
    full.close()
    opts = dict(TINY, checkpoint_every=3)
    first = ImportanceTrainer(model, train, held, ImportanceConfig(steps=3, seed=3, **opts), run_dir=tmp_path,
                              progress=False)
    first.train()  # "interrupted" after its checkpoint at step 3
    first.close()
    second = ImportanceTrainer(model, train, held, ImportanceConfig(steps=6, seed=3, **opts), run_dir=tmp_path,
                               progress=False)
    assert second.resume() and second.step == 3
    second.train()
    second.close()
    assert (second.scores - full.scores).abs().max() < 1e-6
    assert full.scores.abs().max() > 0.1  # the scores did move
    for i in full.stand_ins:
        torch.testing.assert_close(second.stand_ins[i].up.weight, full.stand_ins[i].up.weight, atol=1e-6, rtol=0)
    # Resuming with a different method option is refused in one line.
    other = ImportanceTrainer(model, train, held, ImportanceConfig(steps=6, seed=4, **opts), run_dir=tmp_path,
                              progress=False)
    with pytest.raises(ScaleOTError, match="options differ.*seed"):
        other.resume()
    other.close()


def test_reference_step_computes_every_gradient_but_holds_one_at_a_time(rigged):
    """Stage 1's timing reference (a full forward+backward) must not hold a second copy of the model."""
    model, train, held = rigged
    params = list(model.parameters())
    live = []

    def count_live(_p):
        live.append(sum(q.grad is not None for q in params))

    flags = [p.requires_grad for p in params]
    model.requires_grad_(True)
    watchers = [p.register_post_accumulate_grad_hook(count_live) for p in params]
    try:
        with discard_grads(params) as counts:
            model(input_ids=train[:4], labels=train[:4]).loss.backward()
    finally:
        for w in watchers:
            w.remove()
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    assert sorted(counts) == sorted(id(p) for p in params) and set(counts.values()) == {1}  # every grad computed
    assert max(live) == 1 and all(p.grad is None for p in params)  # and each freed before the next
    trainer = ImportanceTrainer(model, train, held, ImportanceConfig(steps=1, **TINY), progress=False)
    assert trainer.full_step_seconds(repeats=1) > 0
    assert all(p.grad is None and not p.requires_grad for p in params)  # the LLM is frozen again
    trainer.close()


def test_config_reports_all_problems():
    with pytest.raises(ScaleOTError) as e:
        ImportanceConfig(steps=0, n_configs=1, variant="nope", eta=0)
    msg = str(e.value)
    assert "steps must be > 0" in msg and "n_configs" in msg and "variant" in msg and "eta" in msg
    with pytest.raises(ScaleOTError, match="leaves no middle block"):
        ImportanceConfig(n_bottom=3, n_top=3).middle(6)
    assert ImportanceConfig().middle(30) == list(range(2, 28))


def test_spearman():
    assert spearman([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0

"""Harmonizer module, file format, and the switchable-block wrapper."""

import pytest
import torch

from scaleot.errors import ScaleOTError
from scaleot.exchange.importance import load_harmonizers, save_harmonizers
from scaleot.exchange.layers import Harmonizer, HarmonizerConfig, IdentityBlock
from scaleot.model_owner.harmonizer import (
    SwitchableBlock,
    apply_configuration,
    unwrap_blocks,
    wrap_blocks,
)
from scaleot.models import get_blocks
from tests.importance_helpers import tiny_llama


@pytest.mark.parametrize("use_norm", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "silu", "relu"])
def test_identity_at_init_and_shape(activation, use_norm):
    h = Harmonizer(16, HarmonizerConfig(rank=4, activation=activation, use_norm=use_norm))
    x = torch.randn(2, 5, 16)
    assert torch.equal(h(x, attention_mask=None, position_embeddings=(x, x)), x)
    torch.nn.init.normal_(h.up.weight)
    ref = x + h.up(h.act(h.down(h.norm(x))))
    torch.testing.assert_close(h(x), ref)


def test_config_rejects_bad_values():
    with pytest.raises(ScaleOTError, match="rank must be > 0.*activation"):
        HarmonizerConfig(rank=0, activation="tanh")


def test_save_load_roundtrip(tmp_path):
    hs = {i: Harmonizer(16, HarmonizerConfig(rank=4)) for i in (3, 7)}
    for h in hs.values():
        torch.nn.init.normal_(h.up.weight)
    save_harmonizers(tmp_path / "h.safetensors", hs)
    back = load_harmonizers(tmp_path / "h.safetensors")
    assert sorted(back) == [3, 7]
    x = torch.randn(1, 3, 16)
    for i in hs:
        torch.testing.assert_close(back[i](x), hs[i](x))
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(ScaleOTError):
        load_harmonizers(tmp_path / "missing.safetensors")


def test_switchable_blocks_in_a_model():
    model = tiny_llama()
    x = torch.randint(128, (2, 12))
    ref = model(input_ids=x).logits
    wrappers = wrap_blocks(model, {i: IdentityBlock() for i in (1, 2, 3)})
    assert all(isinstance(get_blocks(model)[i], SwitchableBlock) for i in (1, 2, 3))
    torch.testing.assert_close(model(input_ids=x).logits, ref)  # nothing replaced
    apply_configuration(wrappers, [True, False, True], [1, 2, 3])
    dropped = model(input_ids=x).logits
    unwrap_blocks(model)
    blocks = get_blocks(model)
    layers = list(blocks)
    # Reference: run the model with block 2 removed by hand.
    blocks[2] = IdentityBlock()
    torch.testing.assert_close(dropped, model(input_ids=x).logits)
    blocks[2] = layers[2]
    torch.testing.assert_close(model(input_ids=x).logits, ref)

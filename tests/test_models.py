import torch
import pytest

from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES, PRESETS, build_model, get_preset
from edge4k.models.config import E4KConfig
from edge4k.models.cost import gmac_per_megapixel, param_count


def stage_inputs(cfg, tile=128, batch=2):
    packed = torch.rand(batch, 4, tile // 2, tile // 2)
    latent = torch.rand(batch, cfg.latent_channels, tile // cfg.compression, tile // cfg.compression)
    g = torch.rand(1, cfg.global_dim)
    return {"global": (torch.rand(1, 4, cfg.thumb_size, cfg.thumb_size), torch.rand(1, cfg.meta_dim)),
            "encoder": (packed,), "backbone": (latent, g), "decoder": (latent, packed)}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_stage_shapes(name):
    cfg = get_preset(name)
    model = build_model(cfg)
    ins = stage_inputs(cfg, tile=cfg.compression * 4)
    with torch.inference_mode():
        assert model.stage("global")(*ins["global"]).shape == (1, cfg.global_dim)
        assert model.stage("encoder")(*ins["encoder"]).shape == ins["backbone"][0].shape
        assert model.stage("backbone")(*ins["backbone"]).shape == ins["backbone"][0].shape
        assert model.stage("decoder")(*ins["decoder"]).shape == (2, 3, cfg.compression * 4, cfg.compression * 4)


# Ops that some target delegate cannot run (DESIGN.md, op-coverage table).
FORBIDDEN_OPS = ("split", "chunk", "group_norm", "layer_norm", "native_layer_norm", "unbind")


@pytest.mark.parametrize("name", ["e4k-t-f16", "e4k-s-f16", "e4k-s-f16-softmax"])
def test_every_stage_exports_with_npu_friendly_ops(name):
    model = build_model(get_preset(name))
    ins = stage_inputs(model.cfg)
    for stage in NETWORK_STAGES:
        ep = torch.export.export(model.stage(stage), ins[stage]).run_decompositions({})
        for node in ep.graph.nodes:
            if node.op != "call_function":
                continue
            op = str(node.target)
            assert not any(f in op for f in FORBIDDEN_OPS), f"{stage}: {op}"
            val = node.meta.get("val")
            if isinstance(val, torch.Tensor):
                assert val.dim() <= 4, f"{stage}: {op} makes a {val.dim()}-D tensor"


def test_default_preset_fits_a_phone():
    model = build_model(get_preset("e4k-s-f16"))
    assert param_count(model) <= 10e6
    assert gmac_per_megapixel(model) <= 10.0


def test_seed_fixes_the_weights():
    a, b = build_model(get_preset("e4k-t-f16"), seed=3), build_model(get_preset("e4k-t-f16"), seed=3)
    c = build_model(get_preset("e4k-t-f16"), seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_linear_attention_is_invariant_to_token_order_of_keys():
    # A property of attention: permuting all tokens permutes the output the same way.
    from edge4k.models.blocks import LiteLA
    attn = LiteLA(16, heads=2).eval()
    x = torch.rand(1, 16, 4, 4)
    perm = torch.randperm(16)
    xp = x.flatten(2)[:, :, perm].reshape(1, 16, 4, 4)
    with torch.no_grad():
        y, yp = attn(x).flatten(2), attn(xp).flatten(2)
    torch.testing.assert_close(y[:, :, perm], yp, rtol=1e-4, atol=1e-5)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(Edge4KError, match="e4k-s-f16"):
        get_preset("e4k-nope")


def test_bad_config_is_refused():
    with pytest.raises(Edge4KError, match="encoder widths"):
        E4KConfig(name="bad", compression=32)

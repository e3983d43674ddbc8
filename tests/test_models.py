import pytest
import torch

from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES, PRESETS, build_model, get_preset
from edge4k.models.config import E4KConfig
from edge4k.models.cost import gmac_per_megapixel, param_count


def stage_inputs(cfg, tile=128, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)
    packed = rand(batch, 4, tile // 2, tile // 2)
    latent = rand(batch, cfg.latent_channels, tile // cfg.compression, tile // cfg.compression)
    g = rand(1, cfg.global_dim)
    return {"global": (rand(1, 4, cfg.thumb_size, cfg.thumb_size), rand(1, cfg.meta_dim)),
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


@pytest.mark.parametrize("name", ["e4k-t-f16", "e4k-s-f16", "e4k-s-f16-softmax", "e4k-v3-f16"])
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


def test_linear_attention_is_the_relu_linear_attention_formula():
    """LiteLA against SANA's formula, computed token by token in float64 on small seeded
    tensors: out_i = sum_j v_j (k_j . q_i) / sum_j (k_j . q_i) per head, with q = relu(Wq x),
    k = relu(Wk x), v = Wv x, then the output projection. (The module averages K over
    the N tokens, so its eps sits in the ratio as N * eps.)"""
    from edge4k.models.blocks import LiteLA
    torch.manual_seed(0)
    dim, heads, b, h, w = 8, 2, 2, 3, 4
    attn = LiteLA(dim, heads=heads).eval()
    x = torch.randn(b, dim, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = attn(x)
    W = {name: getattr(attn, name).weight[:, :, 0, 0].double() for name in ("q", "k", "v", "proj")}
    tokens = x.double().flatten(2)                       # (b, dim, n)
    n, d = h * w, dim // heads
    expected = torch.zeros(b, dim, n, dtype=torch.float64)
    for bi in range(b):
        q, k, v = (W[name] @ tokens[bi] for name in ("q", "k", "v"))
        q, k = q.clamp(min=0), k.clamp(min=0)
        for head in range(heads):
            rows = slice(head * d, (head + 1) * d)
            for i in range(n):
                scores = [float(k[rows, j] @ q[rows, i]) for j in range(n)]
                num = sum(s * v[rows, j] for j, s in enumerate(scores))
                expected[bi, rows, i] = num / (sum(scores) + n * attn.eps)
        expected[bi] = W["proj"] @ expected[bi] + attn.proj.bias.double()[:, None]
    torch.testing.assert_close(got.double(), expected.reshape(b, dim, h, w), rtol=1e-5, atol=1e-6)
    # not a near-identity: attention mixes tokens (each output differs from its own value)
    assert (got - attn.proj(attn.v(x))).abs().max() > 1e-2


def test_linear_attention_is_equivariant_to_token_order():
    # A property of attention: permuting all tokens permutes the output the same way.
    from edge4k.models.blocks import LiteLA
    torch.manual_seed(0)
    attn = LiteLA(16, heads=2).eval()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, 16, 4, 4, generator=gen)
    perm = torch.randperm(16, generator=gen)
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


def test_the_untrained_decoder_is_malvar_he_cutler():
    # On a linear ramp, MHC's gradient-corrected kernels are exact: every colour at every site equals
    # the ramp, so the untrained network (zero residual head) returns the ramp exactly.
    model = build_model(get_preset("e4k-t-f16"))
    h = w = 32
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ramp = 0.2 + 0.01 * yy + 0.005 * xx
    packed = torch.stack([ramp[0::2, 0::2], ramp[0::2, 1::2], ramp[1::2, 0::2], ramp[1::2, 1::2]])[None]
    with torch.no_grad():
        out = model.decoder.render(model.encoder(packed), packed)[0]
    torch.testing.assert_close(out[:, 2:-2, 2:-2], ramp.expand(3, h, w)[:, 2:-2, 2:-2], rtol=0, atol=1e-5)


def test_clipped_cells_keep_the_classical_render_whatever_the_residual():
    from conftest import tiny_model
    model = tiny_model()                                    # random residual head
    g = torch.Generator().manual_seed(0)
    packed = torch.rand(1, 4, 16, 16, generator=g) * 0.8
    packed[..., :8] = 1.0                                   # the left half clipped in all four channels
    with torch.no_grad():
        out = model.decoder.render(model.encoder(packed), packed)
        base = torch.nn.functional.pixel_shuffle(model.decoder.demosaic(packed), 2)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, 13))   # clipped cells away from the edge
    torch.testing.assert_close(out[inner], base[inner], rtol=0, atol=1e-6)
    assert not torch.allclose(out[..., 20:], base[..., 20:], atol=1e-3)   # elsewhere the residual acts


def test_activation_guards_keep_any_input_finite():
    from conftest import tiny_model
    model = tiny_model(attention="relu-linear")
    for block in model.backbone.blocks:                     # weights that would explode without the guards
        for conv in (block.ffn.value[0], block.ffn.gate[0]):
            torch.nn.init.constant_(conv.weight, 3.0)
    g = torch.Generator().manual_seed(0)
    thumb, meta = torch.full((1, 4, 32, 32), 50.0), torch.full((1, 5), 3.0)
    with torch.no_grad():
        out = model(torch.rand(1, 4, 32, 32, generator=g) * 1000, thumb, meta)
        glob = model.global_branch(thumb * 100, meta * 100)
    assert torch.isfinite(out).all() and glob.abs().max() <= 32.0


def test_existing_presets_keep_their_config_hash_when_fields_are_added():
    from edge4k.models.checkpoint import default_checkpoint, read_safetensors
    shipped = read_safetensors(default_checkpoint("e4k-s-f16"))[1]
    assert get_preset("e4k-s-f16").config_hash() == shipped["config_hash"]
    assert get_preset("e4k-t-f16-v3").config_hash() != get_preset("e4k-t-f16").config_hash()


def test_v3_decoder_inputs_start_as_the_model_they_extend_and_then_act(tmp_path):
    """Warm-started from a checkpoint without them, the clip input (zero) and the residual gate
    (2 sigmoid(0) = 1) leave the output exactly as it was; set to values, each changes it where it should."""
    from conftest import tiny_model

    from edge4k.models.checkpoint import save_checkpoint, warm_start
    base = tiny_model()
    save_checkpoint(tmp_path / "base.safetensors", base)
    v3 = build_model(get_preset("e4k-t-f16-v3"), seed=3)
    copied = warm_start(v3, tmp_path / "base.safetensors")
    assert copied["tensors_copied"] == len(base.state_dict()) < copied["tensors"]
    g = torch.Generator().manual_seed(0)
    packed = torch.rand(1, 4, 16, 16, generator=g) * 0.8
    packed[:, 1, :, :8] = 1.0                           # one site of each cell clipped in the left half
    thumb, meta = torch.rand(1, 4, 32, 32, generator=g), torch.rand(1, 5, generator=g)
    with torch.no_grad():
        before = base(packed, thumb, meta)
        torch.testing.assert_close(v3(packed, thumb, meta), before, rtol=0, atol=0)
        torch.nn.init.normal_(v3.decoder.clip_skip.weight, std=1.0)
        clipped_in = v3(packed, thumb, meta)
        changed = (clipped_in - before).abs().amax(dim=(0, 1))
        assert changed[:, :14].max() > 1e-3             # sites at the clip now feed the decoder (its reach
        # is the decoder's receptive field, so only columns far from the clipped half stay exactly as before)
        v3.decoder.gate.bias.fill_(-20.0)               # gate closed: the classical base alone
        base_only = torch.nn.functional.pixel_shuffle(v3.decoder.demosaic(packed), 2)
        torch.testing.assert_close(v3(packed, thumb, meta), base_only, rtol=0, atol=1e-6)
        assert (before - base_only).abs().max() > 1e-2  # the residual was not zero to begin with


def test_the_decoder_stage_returns_its_residual_and_the_base_is_added_outside_it():
    """Builds compile the stage, which with raw_skip returns only the residual; the model's image and the
    runtime's (add_classical_base) are the old in-graph composition, bit for bit; without raw_skip the
    stage's output is the image and nothing is added."""
    import torch.nn.functional as F

    from edge4k.models import add_classical_base
    model = build_model(get_preset("e4k-t-f16-v3"), seed=1)
    torch.nn.init.normal_(model.decoder.head[-1].weight, std=0.1)   # a residual that is not zero
    g = torch.Generator().manual_seed(0)
    packed = torch.rand(2, 4, 16, 16, generator=g)
    thumb, meta = torch.rand(1, 4, 32, 32, generator=g), torch.rand(1, 5, generator=g)
    with torch.no_grad():
        z = model.backbone(model.encoder(packed), model.global_branch(thumb, meta))
        stage = model.decoder(z, packed)
        base = F.pixel_shuffle(model.decoder.demosaic(packed), 2)
        in_graph = F.pixel_shuffle(model.decoder.demosaic(packed) + F.pixel_unshuffle(stage, 2), 2)
        torch.testing.assert_close(model(packed, thumb, meta), in_graph, rtol=0, atol=0)
        torch.testing.assert_close(add_classical_base(model.cfg, stage, packed), stage + base, rtol=0, atol=0)
        assert (stage - in_graph).abs().max() > 0.1
        noskip = build_model(get_preset("e4k-s-f16-noskip"))
        out = noskip.decoder(noskip.encoder(packed), packed)
        assert add_classical_base(noskip.cfg, out, packed) is out

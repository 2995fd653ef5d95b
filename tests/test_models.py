import pytest
import torch
from conftest import load_benchmark

from myjepa.models.myjepa import MyJEPA
from myjepa.models.predictor import Predictor
from myjepa.models.vit import VisionTransformer
from myjepa.pretrain.config import load_config
from myjepa.pretrain.masks import MaskCollator

pytestmark = pytest.mark.usefixtures("single_thread")


def small_cfg(**kw):
    return load_config("tiny", **{"channel_size": 1000, **kw})  # 40 patches


def masks(cfg, batch, seed=0):
    return MaskCollator(cfg.patch_size, 5, cfg.min_keep_ratio, cfg.max_keep_ratio).masks(
        batch, cfg.num_patches, torch.Generator().manual_seed(seed)
    )


def test_encoder_shapes_keep_and_registers():
    enc = VisionTransformer(channel_size=1000, patch_size=25, dim=32, depth=2, num_heads=2, num_registers=2)
    x = torch.randn(3, 12, 1000)
    assert enc(x).shape == (3, 40, 32)
    assert enc(x, return_registers=True).shape == (3, 42, 32)
    keep = torch.tensor([[0, 5, 9], [1, 2, 3], [37, 38, 39]])
    assert enc(x, keep=keep).shape == (3, 3, 32)
    assert enc(x[:, :, :500]).shape == (3, 20, 32)  # shorter crops


def test_kept_patches_carry_their_own_positions():
    enc = VisionTransformer(channel_size=1000, patch_size=25, dim=32, depth=1, num_heads=2, num_registers=0).eval()
    x = torch.randn(1, 12, 1000)
    x[:, :, 25:50] = x[:, :, 50:75]  # patches 1 and 2 hold the same signal
    out = enc(x, keep=torch.tensor([[1]]))
    out2 = enc(x, keep=torch.tensor([[2]]))
    assert not torch.allclose(out, out2)  # same content, different positions


def test_predictor_returns_only_targets():
    pred = Predictor(num_patches=40, dim=32, pred_dim=16, depth=2, num_heads=2)
    ctx_idx, tgt_idx = torch.tensor([[0, 1, 2, 3]]).expand(2, -1), torch.arange(4, 40).expand(2, -1)
    out = pred(torch.randn(2, 4, 32), ctx_idx, tgt_idx)
    assert out.shape == (2, 36, 32)


def test_myjepa_losses_and_combination():
    cfg = small_cfg()
    model = MyJEPA(cfg)
    ctx_idx, tgt_idx = masks(cfg, 8)
    out = model(torch.randn(8, 12, cfg.channel_size), ctx_idx, tgt_idx)
    loss, pred_loss, sigreg_loss, embeddings, tokens = out
    assert (
        out._fields == ("loss", "pred_loss", "sigreg_loss", "embeddings", "tokens")
        and out["loss"] is loss
        and out.sigreg_loss is sigreg_loss
    )
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out[:3])
    assert torch.allclose(loss, pred_loss + cfg.sigreg_lambda * sigreg_loss)
    assert embeddings.shape == (8, cfg.proj_dim) and not embeddings.requires_grad
    assert tokens.shape == (8, cfg.num_patches, cfg.dim) and not tokens.requires_grad
    assert model.embed(torch.randn(4, 12, cfg.channel_size)).shape == (4, cfg.proj_dim)


def test_gradients_reach_the_encoder_through_context_and_target_paths():
    cfg = small_cfg()
    model = MyJEPA(cfg)
    outputs = []

    def keep_output(module, inputs, output):
        output.retain_grad()
        outputs.append(output)

    model.encoder.norm.register_forward_hook(keep_output)  # the encoder's last layer, in both passes
    ctx_idx, tgt_idx = masks(cfg, 4)
    model(torch.randn(4, 12, cfg.channel_size), ctx_idx, tgt_idx)["pred_loss"].backward()
    g_ctx, g_full = (z.grad[:, cfg.num_registers :] for z in outputs)
    assert g_ctx.shape[1] == ctx_idx.shape[1] and g_full.shape[1] == cfg.num_patches
    assert g_ctx.abs().sum() > 0  # context path (through the predictor)
    assert g_full[torch.arange(4)[:, None], tgt_idx].abs().sum() > 0  # target path: no stop-gradient
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_sigreg_term_reaches_the_projector_and_encoder():
    cfg = small_cfg()
    model = MyJEPA(cfg)
    ctx_idx, tgt_idx = masks(cfg, 8)
    model(torch.randn(8, 12, cfg.channel_size), ctx_idx, tgt_idx)["sigreg_loss"].backward()
    assert model.projector.net[0].weight.grad.abs().sum() > 0
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0


def test_probe_readout_reads_the_chosen_blocks():
    """benchmarks/probe_readout.py: `mean:1` and `block:depth` are the shipped readout; `block:L` is block L's
    tokens through the final LayerNorm; `mean:K` their mean over the last K blocks."""
    probe_readout = load_benchmark("probe_readout")
    torch.manual_seed(0)
    vit = VisionTransformer(channel_size=500, patch_size=25, dim=32, depth=3, num_heads=2).eval()
    x = torch.randn(2, 12, 500)
    tokens = vit.embed(x)
    shipped = vit(x)
    blocks, h = [], torch.cat([vit.registers.expand(2, -1, -1), tokens], dim=1)
    for blk in vit.blocks:
        h = blk(h)
        blocks.append(vit.norm(h)[:, 1:])
    with torch.no_grad():
        read = {
            r: probe_readout.readout_encode(*r)(vit, tokens)
            for r in [("mean", 1), ("block", 3), ("block", 2), ("mean", 2)]
        }
    torch.testing.assert_close(read[("mean", 1)], shipped)
    torch.testing.assert_close(read[("block", 3)], shipped)
    torch.testing.assert_close(read[("block", 2)], blocks[1])
    torch.testing.assert_close(read[("mean", 2)], (blocks[1] + blocks[2]) / 2)
    assert not torch.allclose(read[("block", 2)], shipped, atol=1e-3)

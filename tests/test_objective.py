"""The objective options (models/myjepa.py, models/sigreg.py, pretrain/augment.py): each one's shapes and
gradients, and the defaults reproducing the seed's formulation exactly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from myjepa.errors import UserError
from myjepa.models.myjepa import MyJEPA, Projector, sample_tokens
from myjepa.models.sigreg import REFERENCE_BATCH, SIGReg
from myjepa.models.vit import gather_tokens
from myjepa.pretrain.augment import Augment
from myjepa.pretrain.config import load_config
from myjepa.pretrain.masks import MaskCollator

pytestmark = pytest.mark.usefixtures("single_thread")


def small_cfg(**kw):
    return load_config("tiny", **{"channel_size": 1000, "min_block_size": 5, **kw})  # 40 patches


def batch(cfg, records=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(records, 12, cfg.channel_size, generator=gen)
    collator = MaskCollator(
        cfg.patch_size, cfg.min_block_size, cfg.min_keep_ratio, cfg.max_keep_ratio, None, cfg.num_masks
    )
    return collator(x, gen=gen)


def model_of(cfg, seed=0):
    torch.manual_seed(seed)
    return MyJEPA(cfg, seed=seed)


def test_the_defaults_are_the_seed_formulation():
    """Options off: loss = smooth-L1(predictor(context pass), full pass at the targets) + λ SIGReg(projected mean),
    with one mask, raw targets and SIGReg's pull scaling, to the last bit."""
    cfg = small_cfg()
    assert (cfg.sigreg_tokens, cfg.sigreg_mean, cfg.num_masks, cfg.target_norm, cfg.sigreg_scaling) == (
        0,
        True,
        1,
        False,
        "pull",
    )
    assert Augment.from_config(cfg) is None
    model = model_of(cfg)
    x, ctx_idx, tgt_idx = batch(cfg)
    out = model(x, ctx_idx, tgt_idx)
    model.sigreg.step.zero_()
    tokens = model.encoder.embed(x)
    z_pred = model.predictor(model.encoder.encode(tokens, keep=ctx_idx), ctx_idx, tgt_idx)
    z_full = model.encoder.encode(tokens)
    pred_loss = F.smooth_l1_loss(z_pred, gather_tokens(z_full, tgt_idx))
    sigreg_loss = model.sigreg(model.projector(z_full.mean(1)))
    assert torch.equal(out.pred_loss, pred_loss) and torch.equal(out.sigreg_loss, sigreg_loss)
    assert torch.equal(out.loss, pred_loss + cfg.sigreg_lambda * sigreg_loss)


def test_several_masks_share_one_full_pass_and_average_their_losses():
    cfg = small_cfg(num_masks=3)
    model = model_of(cfg)
    x, ctx_idx, tgt_idx = batch(cfg, records=4)
    assert ctx_idx.shape[0] == tgt_idx.shape[0] == 12
    passes = []
    model.encoder.norm.register_forward_hook(lambda m, i, o: passes.append(o.shape[0]))
    out = model(x, ctx_idx, tgt_idx)
    assert passes == [12, 4]  # one context pass over the 12 masked views, one full pass over the 4 records
    per_mask = []
    for m in range(3):  # mask m of every record, as a one-mask batch
        model.sigreg.step.zero_()
        per_mask.append(model(x, ctx_idx[m::3], tgt_idx[m::3]).pred_loss)
    assert torch.allclose(out.pred_loss, torch.stack(per_mask).mean(), rtol=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_token_sigreg_adds_a_term_over_sampled_tokens():
    cfg = small_cfg(sigreg_tokens=5)
    model = model_of(cfg)
    x, ctx_idx, tgt_idx = batch(cfg)
    seen = []
    model.sigreg.register_forward_hook(lambda m, i, o: seen.append((i[0].shape, o.detach())))
    out = model(x, ctx_idx, tgt_idx)
    assert [shape for shape, _ in seen] == [(6, cfg.proj_dim), (30, cfg.proj_dim)]  # record means, then 6 x 5 tokens
    assert torch.allclose(out.sigreg_loss, (seen[0][1] + seen[1][1]) / 2)
    assert int(model.sigreg.step) == 2
    model.zero_grad()
    out.sigreg_loss.backward()
    assert model.encoder.blocks[0].mlp.fc1.weight.grad.abs().sum() > 0


def test_token_sigreg_alone_without_the_record_mean():
    cfg = small_cfg(sigreg_tokens=100, sigreg_mean=False)
    model = model_of(cfg)
    x, ctx_idx, tgt_idx = batch(cfg)
    seen = []
    model.sigreg.register_forward_hook(lambda m, i, o: seen.append((i[0].shape, o.detach())))
    out = model(x, ctx_idx, tgt_idx)
    assert [shape for shape, _ in seen] == [(6 * cfg.num_patches, cfg.proj_dim)]  # every token of the 6 records
    assert torch.equal(out.sigreg_loss, seen[0][1]) and out.embeddings.shape == (6, cfg.proj_dim)
    out.sigreg_loss.backward()
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0


def test_token_sigreg_on_the_encoders_own_tokens():
    """project_tokens: false: the tokens' term sees the encoder's tokens (dim wide), not their projection, so
    scaling the tokens down raises it, and its gradient reaches the encoder but not the projector."""
    cfg = small_cfg(sigreg_tokens=200, sigreg_mean=False, project_tokens=False)
    model = model_of(cfg)
    x, ctx_idx, tgt_idx = batch(cfg)
    seen = []
    model.sigreg.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    out = model(x, ctx_idx, tgt_idx)
    assert len(seen) == 1 and torch.equal(seen[0], out.tokens.flatten(0, 1))  # every raw token, (6 * 40, dim)
    assert seen[0].shape == (6 * cfg.num_patches, cfg.dim)
    out.sigreg_loss.backward()
    assert model.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.projector.parameters())
    model.sigreg.step.zero_()
    with torch.no_grad():
        tokens = model.encoder(x).flatten(0, 1)
        assert model.sigreg(tokens / 10) > 1.4 * model.sigreg(tokens)  # 812 against 551


def test_target_grad_false_stops_the_prediction_gradient_through_the_targets():
    """target_grad: false: pred_loss reaches the encoder through the context pass only, so its encoder gradient
    is that of the loss with detached targets, and differs from the default's; the values are the same."""
    x, ctx_idx, tgt_idx = batch(small_cfg())
    grads, losses = {}, {}
    for flag in (True, False):
        model = model_of(small_cfg(target_grad=flag))
        out = model(x, ctx_idx, tgt_idx)
        out.pred_loss.backward()
        grads[flag], losses[flag] = model.encoder.blocks[0].attn.qkv.weight.grad.clone(), out.pred_loss.detach()
        if not flag:
            model.zero_grad()
            tokens = model.encoder.embed(x)
            z_pred = model.predictor(model.encoder.encode(tokens, keep=ctx_idx), ctx_idx, tgt_idx)
            detached = gather_tokens(model.encoder.encode(tokens).detach(), tgt_idx)
            F.smooth_l1_loss(z_pred, detached).backward()
            assert torch.allclose(model.encoder.blocks[0].attn.qkv.weight.grad, grads[False], rtol=1e-4, atol=0)
    assert torch.equal(losses[True], losses[False])
    assert 0 < grads[False].norm() < 0.01 * grads[True].norm()  # 0.07 % here, 0.03 % on real ECGs (BENCHMARKS)


def test_context_grad_scale_multiplies_the_context_paths_gradient_only():
    """context_grad_scale k: the same values; the encoder gradient is the target path's plus k times the context
    path's (the latter measured alone with target_grad: false); the predictor's own gradient is unchanged."""
    x, ctx_idx, tgt_idx = batch(small_cfg())

    def run(**kw):
        model = model_of(small_cfg(**kw))
        out = model(x, ctx_idx, tgt_idx)
        out.pred_loss.backward()
        return out.pred_loss.detach(), model.encoder.blocks[0].attn.qkv.weight.grad, model.predictor.proj.weight.grad

    loss, both, pred = run()
    _, context, _ = run(target_grad=False)
    loss_k, both_k, pred_k = run(context_grad_scale=1000.0)
    assert torch.equal(loss_k, loss) and torch.equal(pred_k, pred)
    assert torch.allclose(both_k, both + 999 * context, rtol=1e-3, atol=1e-3 * float(context.abs().max()))


def test_context_grad_share_caps_the_context_paths_scale_at_the_share_of_the_full_pass():
    """context_grad_scale k with context_grad_share s: the first backward is a fixed scale k's and leaves the
    running means of the two passes' gradient norms at the encoder's output; the next one is exactly a fixed
    scale of min(k, s · full / context)."""
    cfg = small_cfg(context_grad_scale=1e6, context_grad_share=0.5)
    x, ctx_idx, tgt_idx = batch(cfg)
    model, uncapped = model_of(cfg), model_of(small_cfg(context_grad_scale=1e6))
    model(x, ctx_idx, tgt_idx).loss.backward()
    uncapped(x, ctx_idx, tgt_idx).loss.backward()
    for p, q in zip(model.parameters(), uncapped.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)

    default = model_of(small_cfg())
    tokens = default.encoder.embed(x)
    z_ctx, z_full = default.encoder.encode(tokens, keep=ctx_idx), default.encoder.encode(tokens)
    pred_loss = F.smooth_l1_loss(default.predictor(z_ctx, ctx_idx, tgt_idx), gather_tokens(z_full, tgt_idx))
    loss = pred_loss + cfg.sigreg_lambda * default.sigreg(default.projector(z_full.mean(1)))
    g_ctx, g_full = torch.autograd.grad(loss, (z_ctx, z_full))
    assert torch.allclose(model.context_grad.norms, 0.1 * torch.stack([g_ctx.norm(), g_full.norm()]), rtol=1e-5)
    k = float(model.context_grad.scale())
    assert k == pytest.approx(0.5 * float(g_full.norm() / g_ctx.norm()), rel=1e-5) and 100 < k < 1e6

    capped = model_of(small_cfg(context_grad_scale=k))
    capped.sigreg.step.fill_(1)  # the second call's SIGReg directions
    model.zero_grad()
    model(x, ctx_idx, tgt_idx).loss.backward()
    capped(x, ctx_idx, tgt_idx).loss.backward()
    for p, q in zip(model.parameters(), capped.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7)
    model.context_grad.share = 1e9  # a cap above k leaves k
    assert float(model.context_grad.scale()) == 1e6


def test_context_grad_share_is_training_state_and_eval_calls_leave_it_alone():
    """The running means resume with the run (a buffer in the checkpoint) but only with a share, so runs of a
    fixed scale keep their checkpoints' keys; calls outside training (the FLOP count) measure nothing."""
    x, ctx_idx, tgt_idx = batch(small_cfg())
    assert "context_grad.norms" in model_of(small_cfg(context_grad_share=0.5)).state_dict()
    assert "context_grad.norms" not in model_of(small_cfg(context_grad_scale=10.0)).state_dict()
    assert model_of(small_cfg()).context_grad is None
    model = model_of(small_cfg(context_grad_share=0.5)).eval()
    model(x, ctx_idx, tgt_idx).loss.backward()
    assert torch.equal(model.context_grad.norms, torch.zeros(2))


def test_sampled_tokens_are_distinct_reproducible_and_all_when_asked():
    z = torch.arange(2 * 10 * 3, dtype=torch.float32).view(2, 10, 3)
    picked = sample_tokens(z, 4, seed=7)
    assert picked.shape == (2, 4, 3) and torch.equal(picked, sample_tokens(z, 4, seed=7))
    assert not torch.equal(picked, sample_tokens(z, 4, seed=8))
    for b in range(2):
        rows = picked[b, :, 0].tolist()
        assert len(set(rows)) == 4 and all(r in z[b, :, 0].tolist() for r in rows)  # its own record's tokens
    assert sample_tokens(z, 10, seed=7) is z and sample_tokens(z, 99, seed=7) is z


def test_target_norm_regresses_layer_normed_targets():
    cfg = small_cfg(target_norm=True)
    model = model_of(cfg)
    x, ctx_idx, tgt_idx = batch(cfg)
    out = model(x, ctx_idx, tgt_idx)
    tokens = model.encoder.embed(x)
    z_pred = model.predictor(model.encoder.encode(tokens, keep=ctx_idx), ctx_idx, tgt_idx)
    z_full = model.encoder.encode(tokens)
    expected = F.smooth_l1_loss(z_pred, gather_tokens(F.layer_norm(z_full, (cfg.dim,)), tgt_idx))
    assert torch.allclose(out.pred_loss, expected)
    raw = F.smooth_l1_loss(z_pred, gather_tokens(z_full, tgt_idx))
    assert not torch.allclose(out.pred_loss, raw)
    with torch.no_grad():  # the target side no longer sees the encoder's output scale
        model.encoder.norm.weight.mul_(10)
    targets = F.layer_norm(model.encoder(x), (cfg.dim,))
    assert torch.allclose(targets, F.layer_norm(z_full, (cfg.dim,)), atol=1e-5)


def test_projector_without_norm_sees_the_tokens_scale():
    """With its LayerNorm (the default) the projector gives the same output for tokens scaled down tenfold
    (first bias zeroed, to show it cleanly), so SIGReg cannot tell; without it, the output shrinks with them."""
    x = torch.randn(16, 64)
    for norm in (True, False):
        torch.manual_seed(0)
        projector = Projector(64, 256, 32, norm=norm)
        with torch.no_grad():
            projector.net[0].bias.zero_()
        assert projector(x).shape == (16, 32)
        spread, small = projector(x).std(0).mean(), projector(x / 10).std(0).mean()
        if norm:  # the same up to the LayerNorm's eps
            assert (projector(x / 10) - projector(x)).abs().max() < 0.01 * spread
        else:
            assert small < spread / 5
    cfg = small_cfg(proj_norm=False)
    model = model_of(cfg)
    assert small_cfg().proj_norm and not any(isinstance(m, torch.nn.LayerNorm) for m in model.projector.modules())
    out = model(*batch(cfg))
    out.sigreg_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())
    assert model.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # SIGReg reaches the encoder


def test_noise_scaling_is_the_pull_times_sqrt_of_samples_over_the_reference_batch():
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(0)) * 1.5
    pull = SIGReg(num_slices=32, seed=3)(z)
    noise = SIGReg(num_slices=32, seed=3, scaling="noise")(z)
    assert noise.shape == () and torch.allclose(noise, pull * (64 / REFERENCE_BATCH) ** 0.5)
    with pytest.raises(ValueError, match="scaling must be one of"):
        SIGReg(scaling="loud")


def augmented(x, augment, seed):
    """Augment x in place as the batch builder does: draws for the batch, then applied."""
    augment.apply(x, MEAN, augment.draw(np.random.default_rng(seed), len(x), x.shape[1]))


MEAN = np.random.default_rng(9).normal(size=(64, 12, 1)).astype(np.float32)


def test_augment_shifts_blanks_and_scales_around_each_dump_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12, 100)).astype(np.float16)
    mean = MEAN
    blank = x.copy()
    augmented(blank, Augment(shift=0, lead_dropout=0.5, scale=0.0), 1)
    blanked = np.all(blank == mean.astype(np.float16), axis=2)
    assert 0.3 < blanked.mean() < 0.55 and not blanked.all(axis=1).any()  # at least one lead kept per crop
    assert np.array_equal(blank[~blanked], x[~blanked])
    shifted = x.copy()
    augmented(shifted, Augment(shift=20, lead_dropout=0.0, scale=0.0), 1)
    lags = [
        next(s for s in range(-20, 21) if np.allclose(np.roll(x[b], s, -1), shifted[b], atol=1e-2)) for b in range(8)
    ]
    assert len(set(lags)) > 1
    scaled = x.copy()
    augmented(scaled, Augment(shift=0, lead_dropout=0.0, scale=0.3), 1)
    factor = (scaled.astype(np.float32) - mean) / (x.astype(np.float32) - mean)
    per_crop = np.median(factor.reshape(64, -1), axis=1)
    assert np.all((per_crop > 0.69) & (per_crop < 1.31)) and per_crop.std() > 0.05
    again = x.copy()
    augmented(again, Augment(shift=20, lead_dropout=0.5, scale=0.3), 5)
    twice = x.copy()
    augmented(twice, Augment(shift=20, lead_dropout=0.5, scale=0.3), 5)
    assert np.array_equal(again, twice)


def test_augment_from_config_in_samples():
    cfg = small_cfg(augment_shift_s=0.5, augment_scale=0.1)
    assert Augment.from_config(cfg) == Augment(shift=250, lead_dropout=0.0, scale=0.1)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"sigreg_tokens": -1}, "sigreg_tokens must be 0 or more"),
        ({"num_masks": 0}, "num_masks must be 1 or more"),
        ({"sigreg_mean": False}, "sigreg_mean: false needs sigreg_tokens > 0"),
        ({"project_tokens": False}, "project_tokens: false needs sigreg_tokens > 0"),
        ({"sigreg_scaling": "loud"}, "sigreg_scaling must be one of"),
        ({"augment_lead_dropout": 1.0}, "augment_lead_dropout < 1"),
        ({"context_grad_scale": 0.0}, "context_grad_scale must be positive, got 0.0"),
        ({"context_grad_share": -1}, "context_grad_share must be 0 or more, got -1"),
    ],
)
def test_bad_option_values_are_named(override, message):
    with pytest.raises(UserError, match=message):
        small_cfg(**override)

"""pipelines/adversarial.py: the discriminators, the losses against hand-worked values, the warm-up
schedule, and a few steps of a tiny codec against them: both optimisers step, and a resume continues."""

from __future__ import annotations

import pytest
import torch

from pipelines.adversarial import (
    AdversarialConfig,
    Adversary,
    Discriminators,
    discriminator_loss,
    feature_matching,
    generator_loss,
)

SMALL = AdversarialConfig(enabled=True, channels=4, periods=(2, 3), resolutions=((128, 32),), d_warmup_steps=1,
                          ramp_steps=2)


def test_every_sub_discriminator_scores_and_exposes_its_layers():
    outs = Discriminators(AdversarialConfig(channels=4))(torch.randn(2, 4000))
    assert len(outs) == 5 + 3  # five periods, three resolutions
    for scores, features in outs:
        assert scores.shape[0] == 2 and len(features) >= 4 and features[-1].flatten(1).shape == scores.shape


def test_losses_on_hand_worked_scores():
    ones, zeros = torch.ones(2, 3), torch.zeros(2, 3)
    real, fake = [(ones, [ones])], [(zeros, [zeros])]
    assert discriminator_loss(real, fake, "lsgan") == 0  # real at 1, rendered at 0: nothing to learn
    assert discriminator_loss(fake, real, "lsgan") == pytest.approx(2.0)  # (0-1)^2 + 1^2
    assert generator_loss(real, "lsgan") == 0 and generator_loss(fake, "lsgan") == pytest.approx(1.0)
    assert discriminator_loss([(ones, [])], [(-ones, [])], "hinge") == 0  # past the hinge on both sides
    assert discriminator_loss([(zeros, [])], [(zeros, [])], "hinge") == pytest.approx(2.0)
    assert generator_loss([(2 * ones, [])], "hinge") == pytest.approx(-2.0)
    assert feature_matching(real, real) == 0 and feature_matching(real, fake) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        Adversary(AdversarialConfig(loss="wasserstein"))


def test_the_discriminators_warm_up_alone_then_ramp_in():
    adversary = Adversary(AdversarialConfig(d_warmup_steps=10, ramp_steps=4, channels=4))
    assert [adversary.weight(s) for s in (0, 9, 10, 11, 13, 100)] == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    wav = torch.randn(2, 2000)
    extra, terms = adversary.generator_terms(wav, wav.clone().requires_grad_(), step=3)
    assert float(extra) == 0.0 and terms == {"adv": 0.0, "fm": 0.0}


def tiny_codec():
    from soundstorm.models.frame_codec import FrameCodec, FrameCodecConfig

    torch.manual_seed(0)
    return FrameCodec(FrameCodecConfig(width=16, encoder_layers=1, decoder_layers=1, levels=2, codebook_size=8,
                                       codebook_dim=4, n_mels=20))


def train_steps(model, adversary, optimizer, start, stop):
    for step in range(start, stop):
        torch.manual_seed(step)
        wav = torch.randn(2, 3200) * 0.1  # ten 20 ms frames
        recon, _, commit = model(wav)
        target = wav[:, : recon.shape[-1]]
        extra, terms = adversary.step(target, recon, step)
        loss = torch.nn.functional.l1_loss(recon, target) + 0.25 * commit + extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return terms


def test_both_optimisers_step_and_a_resume_continues(tmp_path):
    model, adversary = tiny_codec(), Adversary(SMALL)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    d_before = [p.detach().clone() for p in adversary.discriminators.parameters()]
    g_before = [p.detach().clone() for p in model.decoder.parameters()]
    terms = train_steps(model, adversary, optimizer, 0, 3)
    assert terms["adv"] > 0 and terms["fm"] > 0 and terms["d"] > 0  # past the warm-up: all terms on
    assert any(not torch.equal(a, b) for a, b in zip(d_before, adversary.discriminators.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.decoder.parameters(), strict=True))
    adversary.save(tmp_path / "adversary.pt")

    resumed = Adversary(SMALL)
    assert resumed.load(tmp_path / "adversary.pt") and not Adversary(SMALL).load(tmp_path / "missing.pt")
    for a, b in zip(adversary.discriminators.state_dict().values(), resumed.discriminators.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    steps_taken = float(next(iter(resumed.optimizer.state.values()))["step"])
    train_steps(model, resumed, optimizer, 3, 5)
    assert next(iter(resumed.optimizer.state.values()))["step"] == steps_taken + 2  # continued, not restarted

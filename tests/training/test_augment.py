import math

import pytest
import torch
import torch.nn.functional as F

from emovision.errors import EmovisionError
from emovision.training import augment
from emovision.training.options import TrainConfig


def test_stability_kl_matches_a_hand_computed_value():
    clean = torch.tensor([[2.0, 0.0, -1.0]])
    perturbed = torch.tensor([[1.0, 1.0, 0.0]])
    p = [math.exp(v) for v in (2.0, 0.0, -1.0)]
    p = [v / sum(p) for v in p]
    q = [math.exp(v) for v in (1.0, 1.0, 0.0)]
    q = [v / sum(q) for v in q]
    expected = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
    assert abs(float(augment.stability_kl(clean, perturbed)) - expected) < 1e-6
    # by hand: P = (0.8438, 0.1142, 0.0420), Q = (0.4223, 0.4223, 0.1554),
    # KL = 0.8438·0.6922 + 0.1142·(−1.3078) + 0.0420·(−1.3085) = 0.3797
    assert abs(expected - 0.3797) < 1e-3
    assert float(augment.stability_kl(clean, clean)) == 0.0


def test_mixup_follows_the_original_recipe():
    generator = torch.Generator().manual_seed(0)
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 2, 3).clone()
    y = torch.arange(8)
    mixed, y_a, y_b, lam = augment.mixup(x, y, 0.4, generator)
    assert torch.all(lam >= 0.5) and torch.all(lam <= 1.0) and lam.shape == (8,)
    assert torch.equal(y_a, y) and sorted(y_b.tolist()) == list(range(8))
    expected = lam * y.float() + (1 - lam) * y_b.float()
    assert torch.allclose(mixed[:, 0, 0, 0], expected)
    logits = torch.randn(8, 8)
    loss = augment.mixup_loss(logits, y_a, y_b, lam)
    manual = (lam * F.cross_entropy(logits, y_a, reduction="none")).mean() + (
        (1 - lam) * F.cross_entropy(logits, y_b, reduction="none")
    ).mean()
    assert torch.allclose(loss, manual)
    many = augment.mixup(torch.zeros(4000, 1, 1, 1), torch.zeros(4000, dtype=torch.long), 0.4, generator)[3]
    assert abs(float(many.mean()) - 0.8398) < 0.01  # E[max(λ, 1−λ)] for Beta(0.4, 0.4), by quadrature


def test_label_smoothing_trains_towards_a_hand_computed_target():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    y = torch.tensor([0, 2])
    eps = 0.1
    expected = 0.0
    for row, label in zip(logits.tolist(), y.tolist(), strict=True):
        total = sum(math.exp(v) for v in row)
        nll = [-(v - math.log(total)) for v in row]
        # the target puts 1 − ε + ε/K on the label and ε/K on each other class (K = 3)
        target = [eps / 3 + (1 - eps if k == label else 0.0) for k in range(3)]
        expected += sum(t * n for t, n in zip(target, nll, strict=True)) / 2
    lam = torch.ones(2)
    smoothed = augment.mixup_loss(logits, y, y.flip(0), lam, label_smoothing=eps)
    assert abs(float(smoothed) - expected) < 1e-6
    # the smoothed loss of a confident right answer is larger than the plain one
    assert float(smoothed) > float(augment.mixup_loss(logits, y, y.flip(0), lam))


def test_a_label_smoothing_outside_its_range_is_refused():
    for bad in (-0.1, 1.0):
        with pytest.raises(EmovisionError, match="--label-smoothing"):
            TrainConfig(label_smoothing=bad)


def test_frequency_warp_reads_each_row_at_its_frequency_over_alpha():
    frequencies = torch.arange(1, 41, dtype=torch.float32) * 100.0  # 100 … 4000 Hz, linear
    x = frequencies.view(1, 1, 40, 1).expand(6, 2, 40, 5).clone()  # each row holds its own frequency
    warped = augment.frequency_warp(x, frequencies, torch.Generator().manual_seed(3), max_warp=0.1)
    assert warped.shape == x.shape
    assert torch.equal(warped[:, 0], warped[:, 1]) and torch.equal(warped[..., 0], warped[..., 4])
    inside = warped[:, 0, 10:30, 0]  # rows whose f / α lies within 100 … 4000 Hz for any α in [0.9, 1.1]
    alpha = frequencies[10:30] / inside  # linear interpolation of a linear ramp is exact: f / (f / α)
    assert torch.allclose(alpha, alpha[:, :1].expand_as(alpha), atol=1e-5)
    assert torch.all((alpha[:, 0] >= 0.9) & (alpha[:, 0] <= 1.1)) and len(set(alpha[:, 0].tolist())) == 6
    stretched = alpha[:, 0] > 1  # the first row reads below 100 Hz: the edge row, repeated
    assert torch.all(warped[stretched, 0, 0, 0] == 100.0) and torch.all(
        warped[~stretched, 0, -1, 0] == 4000.0
    )


def test_frequency_warp_moves_a_mel_band_peak_by_alpha():
    from emovision.data.features import FeatureConfig, bin_frequencies

    frequencies = torch.from_numpy(bin_frequencies(FeatureConfig(n_mels=64)))
    row = int(torch.argmin((frequencies - 1000.0).abs()))
    x = torch.zeros(200, 1, 64, 1)
    x[:, 0, row, 0] = 1.0  # a single band near 1 kHz, as a formant
    warped = augment.frequency_warp(x, frequencies, torch.Generator().manual_seed(4), max_warp=0.2)
    peak = (warped[:, 0, :, 0] * frequencies).sum(dim=1) / warped[:, 0, :, 0].sum(dim=1)  # Hz
    ratio = peak / frequencies[row]
    assert (
        float(ratio.min()) < 0.85 and float(ratio.max()) > 1.15 and torch.all((ratio > 0.78) & (ratio < 1.22))
    )
    assert torch.all(warped >= 0) and torch.all(warped <= 1)


def test_oversampling_balances_classes_for_any_channel_count():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 1)
    indices = augment.oversample_indices(labels, torch.Generator().manual_seed(1))
    assert torch.bincount(labels[indices]).tolist() == [10, 10, 10]
    assert set(range(14)) <= set(indices.tolist())
    segments = torch.randn(14, 3, 4, 5)
    assert segments[indices].shape == (30, 3, 4, 5)


def test_perturbations():
    x = torch.randn(6, 3, 4, 5)
    swapped = augment.channel_perturbation(x, torch.Generator().manual_seed(2))
    for i in range(6):
        assert torch.equal(swapped[i, 1:], x[i, 1:])
        assert torch.equal(swapped[i, 0], x[i, 1]) or torch.equal(swapped[i, 0], x[i, 2])
    torch.manual_seed(0)
    noisy = augment.gaussian_perturbation(x, torch.full((3, 4, 1), 0.5))
    assert 0.4 < float((noisy - x).std()) < 0.6
    weights = augment.class_weights(torch.tensor([0, 0, 0, 1]), 3)
    assert torch.allclose(weights, torch.tensor([4 / 9, 4 / 3, 1.0]))


def test_spec_augment_masks_bands_and_spans_within_their_widths():
    x = torch.randn(64, 2, 40, 50)
    fill = torch.full((2, 40, 1), 7.0)
    masked = augment.spec_augment(x, fill, torch.Generator().manual_seed(3), 2, 8, 2, 12)
    assert masked.shape == x.shape and not torch.equal(masked, x)
    hit = masked == 7.0
    assert torch.equal(hit[:, 0], hit[:, 1])  # the same masks on every channel
    for sample in hit[:, 0]:
        bands, spans = sample.all(dim=1), sample.all(dim=0)  # fully masked bins and frames
        assert int(bands.sum()) <= 16 and int(spans.sum()) <= 24
        assert torch.equal(sample, bands[:, None] | spans[None, :])  # nothing masked outside them
    assert torch.equal(masked[~hit], x[~hit])
    again = augment.spec_augment(x, fill, torch.Generator().manual_seed(3), 2, 8, 2, 12)
    assert torch.equal(again, masked)  # reproducible for a seed
    assert torch.equal(augment.spec_augment(x, fill, torch.Generator(), 0, 8, 0, 12), x)


def test_pick_versions_uses_every_utterance_once_and_copies_at_the_asked_rate():
    versions = [[(3 * u, 3), (100 + 2 * u, 2)] for u in range(20)] + [[(60, 1)]]
    generator = torch.Generator().manual_seed(0)
    assert augment.pick_versions(versions, 0.0, generator).tolist() == list(range(61))
    always = augment.pick_versions(versions, 1.0, generator).tolist()
    assert always == [i for u in range(20) for i in (100 + 2 * u, 101 + 2 * u)] + [60]
    copies = sum(int(augment.pick_versions(versions, 0.3, generator)[0] >= 100) for _ in range(2000))
    assert 500 < copies < 700  # 0.3 · 2000 = 600

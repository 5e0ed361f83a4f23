"""No information from a held-out speaker, or from the recording being scored, reaches a model.

One test per rule: babble for a speaker's augmented copies is made of that speaker's voice only;
the trainer's input normalisation (and the speaker-normalisation prior) has the statistics of the
training speakers alone; every augmented copy the trainer reads carries its own utterance's label;
an enrolled speaker's statistics never include the recording being scored.
"""

from __future__ import annotations

import h5py
import numpy as np
import soundfile
import torch

from emovision.data import acoustics
from emovision.data.audio import load_audio
from emovision.data.augment_audio import AugmentPlan
from emovision.data.corpora import load_corpus
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig, compute_features
from emovision.data.speaker_norm import SpeakerNormaliser, enrolment, mode_view
from emovision.training.checkpoint import load_checkpoint
from emovision.training.dataset import open_source
from emovision.training.folds import make_fold
from emovision.training.options import TrainConfig
from emovision.training.train import Trainer

TONE_HZ = 2500.0
LOGSPEC = FeatureConfig(kind="logspec", segment_frames=100)  # 20 Hz bins up to 4 kHz
TONE_BIN = round(TONE_HZ * LOGSPEC.n_fft / LOGSPEC.sample_rate)


def _tone_excess(segments: np.ndarray) -> float:
    """Median over the frames of one recording's segments ``(n, 1, F, T)`` (padding left out) of the
    level (dB) of the tone's bin above its neighbourhood (±5 … ±10 bins): near 0 for speech, tens of
    dB with a steady tone in it."""
    level = np.concatenate(list(segments[:, 0]), axis=1)  # (F, n·T)
    level = level[:, level.max(axis=0) > level.min()]  # padding frames are the floor in every bin
    around = np.concatenate([level[TONE_BIN - 10 : TONE_BIN - 4], level[TONE_BIN + 5 : TONE_BIN + 11]])
    return float(np.median(level[TONE_BIN] - around.mean(axis=0)))


def _recordings(group) -> list[np.ndarray]:
    """The segments of each recording (or copy) of an HDF5 group of a features file."""
    segments = group["segments"][:]
    ends = np.cumsum(group["segments_per_utterance"][:])
    return np.split(segments, ends[:-1])


def test_babble_is_made_of_the_same_speakers_voice_only(tmp_path, emodb_wavs):
    """A corpus of one real speaker and one "speaker" whose every recording is a loud pure tone: no
    babble copy of the real speaker holds the tone, although one made with the tone would show it."""
    speech = [w for w in emodb_wavs if w.name.startswith("03")][:4]
    tone = 0.5 * np.sin(2 * np.pi * TONE_HZ * np.arange(2 * 16000) / 16000).astype(np.float32)
    rows = ["path,speaker,label"] + [f"{w},real,{w.name[5]}" for w in speech]
    for i in range(6):
        soundfile.write(tmp_path / f"tone{i}.wav", tone, 16000)
        rows.append(f"{tmp_path / f'tone{i}.wav'},tone,W")
    (tmp_path / "corpus.csv").write_text("\n".join(rows) + "\n")
    plan = AugmentPlan(augment=("noise",), noises=("babble",), snr=(5.0, 5.0), babble_talkers=3)
    out = tmp_path / "babble.h5"
    corpus = load_corpus("manifest", tmp_path / "corpus.csv")
    extract_corpus(corpus, LOGSPEC, out, workers=1, progress=False, augment=plan)
    with h5py.File(out, "r") as handle:
        clean = _recordings(handle["real"])
        copies = _recordings(handle["real/augmented"])
        kinds = [k.decode() if isinstance(k, bytes) else k for k in handle["real/augmented/kinds"][:]]
        tone_copies = _recordings(handle["tone/augmented"])
    assert kinds == ["noise:babble"] * len(speech) and len(copies) == len(speech)
    assert max(_tone_excess(s) for s in clean) < 6.0  # the speaker's own recordings: no line
    assert max(_tone_excess(s) for s in copies) < 6.0  # nor in its babble
    assert min(_tone_excess(s) for s in tone_copies) > 20.0  # the detector sees a tone where there is one
    # the same copy with the tone speaker among the talkers: the line stands 20 dB and more above speech
    voice = load_audio(speech[0])
    talkers = [load_audio(speech[1]), load_audio(speech[2]), tone]
    leaked = acoustics.add_noise_snr(
        voice, acoustics.babble(talkers, voice.size, 16000, np.random.default_rng(0)), 5.0, 16000
    )
    assert _tone_excess(compute_features(leaked, LOGSPEC)[None]) > 15.0


def _segments(features, speakers: list[str]) -> np.ndarray:
    with h5py.File(features, "r") as handle:
        return np.concatenate([handle[s]["segments"][:] for s in speakers]).astype(np.float64)


def test_the_input_normalisation_has_the_training_speakers_statistics_alone(trained_model):
    from trained_model import TEST_SPEAKERS, TRAIN_SPEAKERS, VAL_SPEAKERS

    state = load_checkpoint(trained_model.checkpoint)["state_dict"]
    mean, std = state["norm.mean"].double().numpy(), state["norm.std"].double().numpy()
    training = _segments(trained_model.features, TRAIN_SPEAKERS)  # (N, C, F, T)
    expected_mean = training.mean(axis=(0, 3))[..., None]
    expected_std = training.std(axis=(0, 3))[..., None]  # per channel and bin, over segments and frames
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(std, expected_std, rtol=1e-4)
    everyone = _segments(trained_model.features, TRAIN_SPEAKERS + VAL_SPEAKERS + TEST_SPEAKERS)
    assert np.abs(everyone.mean(axis=(0, 3))[..., None] - mean).max() > 0.1  # the check can tell


def _recording_moments(features, speakers: list[str]):
    """Per training recording the mean and mean square over its segments' frames ``(C, F)``, and its
    speaker, read with h5py."""
    means, squares, owners = [], [], []
    with h5py.File(features, "r") as handle:
        for s in speakers:
            segments = handle[s]["segments"][:].astype(np.float64)
            start = 0
            for count in handle[s]["segments_per_utterance"][:]:
                piece = segments[start : start + count]  # (n, C, F, T)
                start += count
                means.append(piece.mean(axis=(0, 3)))
                squares.append((piece**2).mean(axis=(0, 3)))
                owners.append(s)
    return np.array(means), np.array(squares), np.array(owners)


def test_speaker_normalised_training_takes_its_prior_and_input_statistics_from_training_speakers(
    normalised_run,
):
    out, metrics, model = normalised_run
    train = metrics["fold"]["train"]
    checkpoint = load_checkpoint(out / "best.pth")
    prior = checkpoint["speaker_norm"]
    means, squares, owners = _recording_moments(model.features, train)
    np.testing.assert_allclose(np.asarray(prior["mean"]), means.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(prior["square"]), squares.mean(axis=0), rtol=1e-6)
    held_out, _, _ = _recording_moments(model.features, metrics["fold"]["val"] + metrics["fold"]["test"])
    assert np.abs(np.concatenate([means, held_out]).mean(axis=0) - prior["mean"]).max() > 0.1
    # the input normalisation: the training segments, each speaker z-scored by all of its recordings
    # shrunk towards the prior by τ recordings, then mean and std per channel and bin
    tau = checkpoint["train_config"]["speaker_prior"]
    normalised = []
    with h5py.File(model.features, "r") as handle:
        for s in train:
            mine = owners == s
            centre = (means[mine].sum(axis=0) + tau * means.mean(axis=0)) / (mine.sum() + tau)
            square = (squares[mine].sum(axis=0) + tau * squares.mean(axis=0)) / (mine.sum() + tau)
            spread = np.maximum(np.sqrt(np.maximum(square - centre**2, 0.0)), 1e-3)
            segments = handle[s]["segments"][:].astype(np.float64)
            normalised.append((segments - centre[..., None]) / spread[..., None])
    normalised = np.concatenate(normalised)
    state = checkpoint["state_dict"]
    np.testing.assert_allclose(
        state["norm.mean"].double().numpy(), normalised.mean(axis=(0, 3))[..., None], atol=1e-4
    )
    np.testing.assert_allclose(
        state["norm.std"].double().numpy(), normalised.std(axis=(0, 3))[..., None], rtol=1e-3
    )


def test_every_augmented_copy_in_the_trainer_carries_its_own_utterances_label(emodb_augmented, tmp_path):
    source = open_source(emodb_augmented)
    fold = make_fold(source, ["09"], ["10"])
    config = TrainConfig(model="alexnet_gap", epochs=1, device="cpu", augment="noise,reverb,speed,gain")
    trainer = Trainer(source, fold, config, tmp_path, progress=None)
    trainer.prepare()
    x, y = trainer.train_x, trainer.train_y.numpy()
    versions = trainer.train_split.versions
    u = 0
    with h5py.File(emodb_augmented, "r") as handle:
        for speaker in fold.train:
            group = handle[speaker]
            labels = group["utterance_labels"][:]
            copies = group["augmented"]
            source_rows = copies["source"][:]
            copy_starts = np.concatenate([[0], np.cumsum(copies["segments_per_utterance"][:])])
            copy_segments = copies["segments"][:]
            for row, label in enumerate(labels):
                clean, *copied = versions[u]
                mine = np.flatnonzero(source_rows == row)
                assert len(copied) == mine.size == 6  # one per kind
                for (start, count), i in zip(copied, mine, strict=True):
                    expected = copy_segments[copy_starts[i] : copy_starts[i + 1]]
                    assert count == expected.shape[0]
                    assert torch.equal(x[start : start + count], torch.from_numpy(expected))  # this copy
                    assert (y[start : start + count] == label).all()  # with its utterance's label
                start, count = clean
                assert (y[start : start + count] == label).all()
                u += 1
    assert u == len(versions)
    copied_rows = sum(count for v in versions for _, count in v[1:])
    assert copied_rows == x.shape[0] - len(trainer.train_split)  # every copy row belongs to one utterance


def test_an_enrolled_recording_is_never_scored_and_the_scored_one_never_enrols():
    rng = np.random.default_rng(2)
    for n in range(2, 14):
        for k in (1, 3, 5, n - 1, n, n + 4):
            for draw in range(4):
                chosen = enrolment(f"s{n}", n, k, draw)
                assert chosen.size == min(k, n - 1) and len(set(chosen.tolist())) == chosen.size
                assert chosen.min() >= 0 and chosen.max() < n  # and at least one recording left to score
    sizes = [7, 2, 12, 5]
    owners = np.repeat(np.arange(len(sizes)), sizes)
    speakers = ["a", "b", "c", "d"]
    means = rng.normal(size=(owners.size, 2, 3))
    squares = means**2 + rng.uniform(1, 4, size=means.shape)
    prior = SpeakerNormaliser("mixed", means.mean(axis=0), squares.mean(axis=0), 2.0)
    for k in (1, 3, 5, 20):
        for draw in range(3):
            view = mode_view(prior, means, squares, speakers, owners, "enrolled", enrol=k, draw=draw)
            for index, name in enumerate(speakers):
                rows = np.flatnonzero(owners == index)
                enrolled = rows[enrolment(name, rows.size, k, draw)]
                assert set(rows[~view.scored[rows]]) == set(enrolled)  # enrolment recordings are not scored
                assert view.scored[rows].any()
                # by hand: the enrolled recordings' moments, shrunk towards the prior by 2 recordings
                centre = (means[enrolled].sum(axis=0) + 2.0 * prior.mean) / (enrolled.size + 2.0)
                square = (squares[enrolled].sum(axis=0) + 2.0 * prior.square) / (enrolled.size + 2.0)
                for u in rows[view.scored[rows]]:
                    np.testing.assert_allclose(view.mean[u, ..., 0], centre, rtol=1e-5)
                    np.testing.assert_allclose(view.std[u, ..., 0], np.sqrt(square - centre**2), rtol=1e-4)
            # what a scored recording holds never moves its own statistics
            for u in np.flatnonzero(view.scored):
                moved_means, moved_squares = means.copy(), squares.copy()
                moved_means[u] += 50.0
                moved_squares[u] += 5000.0
                again = mode_view(prior, moved_means, moved_squares, speakers, owners, "enrolled", k, draw)
                assert np.array_equal(again.mean[u], view.mean[u]) and np.array_equal(
                    again.std[u], view.std[u]
                )

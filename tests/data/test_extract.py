import multiprocessing
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from emovision.cli import main
from emovision.data.audio import load_audio
from emovision.data.augment_audio import AugmentPlan, augmented_copies
from emovision.data.corpora import load_corpus
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig, speaker_normalise
from emovision.data.functionals import Functionals
from emovision.data.store import load_speakers, open_info, read_features
from emovision.system import worker_pool


def test_extract_emodb_command(tmp_path, emodb_dir, capsys):
    out = tmp_path / "emodb.h5"
    code = main(["extract", "emodb", str(emodb_dir), "-o", str(out), "--segment-frames", "100", "--quiet"])
    assert code == 0
    info = open_info(out)
    assert info.corpus == "emodb" and len(info.classes) == 7 and len(info.speakers) == 10
    assert info.config.segment_frames == 100 and info.config.kind == "logmelspec"
    data = load_speakers(out)
    assert sum(len(d.utterance_ids) for d in data.values()) == 535
    for d in data.values():
        assert d.segments.shape[1:] == (1, 128, 100)
        assert d.segments.shape[0] == d.segments_per_utterance.sum() == d.segment_labels.size
        assert np.all(np.repeat(d.utterance_labels, d.segments_per_utterance) == d.segment_labels)
        assert np.all(d.segments <= 0) and np.all(d.segments >= -80)
    printed = capsys.readouterr().out
    assert "535" in printed and "skipped: none" in printed


def _small_corpus(tmp_path, emodb_wavs, broken=True):
    rows = ["path,speaker,label"]
    for i, wav in enumerate(emodb_wavs[:12]):
        rows.append(f"{wav},s{i % 3},{'a' if i % 2 else 'b'}")
    if broken:
        (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
        sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
        rows += ["broken.wav,s0,a", "silent.wav,s1,b"]
    csv = tmp_path / "m.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def test_unreadable_files_are_skipped_with_reasons_or_abort_with_strict(tmp_path, emodb_wavs, capsys):
    csv = _small_corpus(tmp_path, emodb_wavs)
    out = tmp_path / "m.h5"
    assert main(["extract", "manifest", str(csv), "-o", str(out), "--quiet", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 2 file(s)" in printed and "unreadable audio" in printed and "silent" in printed
    assert sum(len(d.utterance_ids) for d in load_speakers(out).values()) == 12
    strict_out = tmp_path / "strict.h5"
    code = main(["extract", "manifest", str(csv), "-o", str(strict_out), "--quiet", "--strict"])
    assert code == 2 and not strict_out.exists()
    assert "broken.wav" in capsys.readouterr().err


def test_resume_reuses_finished_speakers(tmp_path, emodb_wavs, monkeypatch):
    csv = _small_corpus(tmp_path, emodb_wavs, broken=False)
    corpus = load_corpus("manifest", csv)
    config = FeatureConfig(segment_frames=50)
    out = tmp_path / "r.h5"
    import emovision.data.extract as extract

    calls = []
    real = extract._extract_speaker

    def crash_on_second(utterances, *args):
        calls.append(utterances[0].speaker)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(utterances, *args)

    monkeypatch.setattr(extract, "_extract_speaker", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        extract_corpus(corpus, config, out, workers=1, progress=False)
    assert not out.exists() and (tmp_path / "r.h5.partial").exists()
    monkeypatch.setattr(extract, "_extract_speaker", real)
    summary = extract_corpus(corpus, config, out, workers=1, progress=False)
    assert summary.resumed == ["s0"]
    assert sum(summary.utterances.values()) == 12 and not (tmp_path / "r.h5.partial").exists()


EXTRACT_CHILD = """
import os, signal, sys
from emovision.data import store
from emovision.data.corpora import load_corpus
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig

real = store.FeatureWriter.write_speaker


def half_written(self, speaker, data):  # the second speaker: one array on disk, then killed
    if not self.done_speakers():
        return real(self, speaker, data)
    self._file.create_group(speaker).create_dataset("segments", data=data.segments)
    self._file.flush()
    os.kill(os.getpid(), signal.SIGKILL)


store.FeatureWriter.write_speaker = half_written
extract_corpus(load_corpus("manifest", sys.argv[1]), FeatureConfig(), sys.argv[2], workers=2, progress=False)
"""


def test_a_killed_extraction_resumes_to_the_same_file(tmp_path, emodb_wavs):
    from interrupt import run_child

    csv = _small_corpus(tmp_path, emodb_wavs, broken=False)
    out = tmp_path / "k.h5"
    run_child(EXTRACT_CHILD, str(csv), str(out), killed=True)
    assert not out.exists() and (tmp_path / "k.h5.partial").exists()
    summary = extract_corpus(load_corpus("manifest", csv), FeatureConfig(), out, workers=1, progress=False)
    assert summary.resumed == ["s0"]
    straight = tmp_path / "straight.h5"
    extract_corpus(load_corpus("manifest", csv), FeatureConfig(), straight, workers=1, progress=False)
    resumed, expected = load_speakers(out), load_speakers(straight)
    assert resumed.keys() == expected.keys() == {"s0", "s1", "s2"}
    for speaker, data in expected.items():
        np.testing.assert_array_equal(resumed[speaker].segments, data.segments)
        assert resumed[speaker].utterance_ids == data.utterance_ids


def test_seed_pickle_output(tmp_path, emodb_wavs):
    csv = _small_corpus(tmp_path, emodb_wavs, broken=False)
    out = tmp_path / "p.h5"
    assert main(["extract", "manifest", str(csv), "-o", str(out), "--format", "seed-pickle", "--quiet"]) == 0
    legacy = read_features(out.with_suffix(".pkl"), trust_pickle=True)
    modern = read_features(out)
    assert legacy.keys() == modern.keys()
    np.testing.assert_array_equal(legacy["s1"][0], modern["s1"][0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["emodb", "/nonexistent/emodb"], "does not exist"),
        (["emodb", "{emodb}", "--classes", "anger,joy"], "unknown class 'joy'"),
        (["iemocap", "{emodb}"], "no Session1"),
        (["emodb", "{emodb}", "--features", "mfcc"], "invalid choice"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, emodb_dir, args, message):
    args = [a.replace("{emodb}", str(emodb_dir)) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "emovision", "extract", *args, "-o", str(tmp_path / "x.h5")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


_MARK = "as imported"


def _mark() -> str:
    return _MARK


def _mark_seen_by_a_worker() -> str:
    global _MARK
    _MARK = "set at run time"
    with worker_pool(1) as pool:
        return pool.submit(_mark).result()


def test_feature_workers_are_forked_even_from_a_spawned_process():
    """A spawned process (a cv fold worker, macOS) would start its workers as fresh interpreters, each
    importing everything again (3× slower on emoDB); a forked worker sees the parent's run-time state."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as spawned:
        assert spawned.submit(_mark_seen_by_a_worker).result() == "set at run time"


def test_speaker_norm_stores_each_speaker_its_copies_and_functionals_as_z_scores(tmp_path, emodb_dir):
    corpus = load_corpus("emodb", emodb_dir, "4")
    corpus.utterances = [u for u in corpus.utterances if u.speaker in ("03", "08")]
    plan = AugmentPlan(augment=("noise", "reverb"), noises=("white", "pink"))
    files = {}
    for norm in (False, True):
        config = FeatureConfig(n_mels=32, segment_frames=100, segment_tail="shift", speaker_norm=norm)
        files[norm] = tmp_path / f"norm-{norm}.h5"
        extract_corpus(
            corpus, config, files[norm], workers=2, progress=False, augment=plan, functionals="eGeMAPSv02"
        )
    assert open_info(files[True]).config.speaker_norm and not open_info(files[False]).config.speaker_norm
    plain = load_speakers(files[False], ["03", "08"], augmented=True)
    normalised = load_speakers(files[True], ["03", "08"], augmented=True)
    for speaker in ("03", "08"):
        raw, stored = plain[speaker], normalised[speaker]
        np.testing.assert_allclose(stored.segments, speaker_normalise(raw.segments), atol=1e-4)
        np.testing.assert_allclose(stored.segments.mean(axis=(0, 3)), 0.0, atol=1e-4)
        np.testing.assert_allclose(stored.functionals, speaker_normalise(raw.functionals), atol=1e-4)
        np.testing.assert_allclose(
            stored.functionals.std(axis=0)[raw.functionals.std(axis=0) > 0], 1.0, atol=1e-3
        )
        assert stored.augmented.kinds == raw.augmented.kinds
        assert set(raw.augmented.kinds) == {"noise:white", "noise:pink", "reverb"}
        rows = np.repeat(np.arange(len(raw.augmented.kinds)), raw.augmented.segments_per_utterance)
        for kind in set(raw.augmented.kinds):
            picked = np.isin(rows, [i for i, k in enumerate(raw.augmented.kinds) if k == kind])
            expected = speaker_normalise(raw.augmented.segments[picked])
            np.testing.assert_allclose(stored.augmented.segments[picked], expected, atol=1e-4)
            # the copies' functionals too, per kind
            of_kind = np.array(raw.augmented.kinds) == kind
            expected = speaker_normalise(raw.augmented.functionals[of_kind])
            np.testing.assert_allclose(stored.augmented.functionals[of_kind], expected, atol=1e-4)
        assert raw.augmented.functionals.shape == (len(raw.augmented.kinds), raw.functionals.shape[1])
    # a copy's functionals are those of the copy's audio, not of the clean utterance
    first = next(u for u in corpus.utterances if u.speaker == "03")
    samples = load_audio(first.path, 16000)
    signals = augmented_copies(samples, 16000, first.id, plan)
    functionals = Functionals("eGeMAPSv02")
    raw = plain["03"]
    row = raw.utterance_ids.index(first.id)
    for index, i in enumerate(np.flatnonzero(raw.augmented.source == row)):
        expected = functionals(signals[index], 16000)
        np.testing.assert_allclose(raw.augmented.functionals[i], expected, rtol=1e-4, atol=1e-4)
        assert not np.allclose(raw.augmented.functionals[i], raw.functionals[row], rtol=1e-3)


RAVDESS_DIR = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ravdess"


@pytest.mark.slow
def test_extract_ravdess_command_reads_flac_and_selects_an_intensity(tmp_path):
    root = tmp_path / "ravdess"
    for actor in ("Actor_13", "Actor_14"):
        shutil.copytree(RAVDESS_DIR / actor, root / actor)
    names = [p.name for actor in ("Actor_13", "Actor_14") for p in (RAVDESS_DIR / actor).glob("*.flac")]
    out = tmp_path / "all.h5"
    args = [
        "--n-mels",
        "64",
        "--segment-frames",
        "200",
        "--segment-tail",
        "trim",
        "--quiet",
        "--workers",
        "2",
    ]
    assert main(["extract", "ravdess", str(root), "-o", str(out), *args]) == 0
    speakers = load_speakers(out)
    assert sorted(speakers) == ["13", "14"]
    assert sum(len(s.utterance_ids) for s in speakers.values()) == len(names) == 120
    strong = tmp_path / "strong.h5"
    assert main(["extract", "ravdess", str(root), "-o", str(strong), "--intensity", "strong", *args]) == 0
    # the name's fourth field is the intensity: 02 strong (neutral has none)
    expected = sum(name.split("-")[3] == "02" for name in names)
    assert sum(len(s.utterance_ids) for s in load_speakers(strong).values()) == expected == 56


@pytest.mark.slow
def test_extract_command_with_speaker_norm_recorded_noise_and_compare(tmp_path, emodb_wavs):
    chosen = [w for w in emodb_wavs if w.name[:2] in ("03", "08")][:4] + [
        w for w in emodb_wavs if w.name[:2] == "08"
    ][:4]
    rows = ["path,speaker,label"] + [f"{w},{w.name[:2]},{w.name[5]}" for w in chosen]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    noises = tmp_path / "noises"
    noises.mkdir()
    sf.write(noises / "hum.wav", 0.1 * np.sin(np.arange(32000) * 2 * np.pi * 100 / 16000), 16000)
    common = ["--n-mels", "64", "--segment-frames", "100", "--quiet", "--workers", "1"]
    plain, normalised = tmp_path / "plain.h5", tmp_path / "normalised.h5"
    assert main(["extract", "manifest", str(tmp_path / "list.csv"), "-o", str(plain), *common]) == 0
    extra = ["--speaker-norm", "--augment", "noise", "--augment-noises", "recorded"]
    extra += ["--augment-noise-dir", str(noises), "--functionals", "ComParE_2016"]
    assert (
        main(["extract", "manifest", str(tmp_path / "list.csv"), "-o", str(normalised), *common, *extra]) == 0
    )
    before, after = load_speakers(plain), load_speakers(normalised, augmented=True)
    for speaker, raw in before.items():
        segments = raw.segments.astype(np.float64)
        mean = segments.mean(axis=(0, 3), keepdims=True)
        std = segments.std(axis=(0, 3), keepdims=True)
        np.testing.assert_allclose(after[speaker].segments, (segments - mean) / std, rtol=1e-3, atol=1e-3)
        copies = after[speaker].augmented
        assert copies.kinds == ["noise:recorded"] * len(raw.utterance_ids)
        assert after[speaker].functionals.shape == (len(raw.utterance_ids), 6373)


@pytest.mark.slow
def test_extract_iemocap_command_on_a_miniature_release(tmp_path, emodb_wavs):
    from collections import Counter

    from conftest import IEMOCAP_LABELS, build_iemocap_tree

    dialogs = ("Ses01F_impro01", "Ses02M_impro03", "Ses03F_script01_1")
    release = build_iemocap_tree(tmp_path, emodb_wavs[0], keep=lambda utt: utt.startswith(dialogs))
    out = tmp_path / "iemocap.h5"
    args = ["--classes", "4", "--improvised-only", "--n-mels", "64", "--segment-frames", "100", "--quiet"]
    assert main(["extract", "iemocap", str(release), "-o", str(out), *args]) == 0
    # hand count from the label lines: improvised dialogs kept, exc merged into hap, speaker = session + gender
    expected = Counter()
    for line in (IEMOCAP_LABELS / "emo_labels.txt").read_text().splitlines():
        _, utt, label, _ = line.split("\t")
        if utt.startswith(dialogs) and "_impro" in utt and label in ("ang", "hap", "exc", "sad", "neu"):
            expected[utt[4] + utt.rsplit("_", 1)[1][0]] += 1
    stored = load_speakers(out)
    assert {name: len(s.utterance_ids) for name, s in stored.items()} == dict(expected)
    assert sum(expected.values()) > 20

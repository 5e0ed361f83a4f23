"""Robustness evaluation: SNR and RT60 of the corruptions, determinism, and a tiny real cv run end to end."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from emovision.cli import main
from emovision.data import acoustics
from emovision.data.audio import load_audio
from emovision.data.corpora import load_corpus
from emovision.data.corruption import (
    CorruptionPlan,
    babble_pool,
    babble_sources,
    corrupt,
    parse_numbers,
    room_impulse_response,
)
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig, compute_features, segment
from emovision.data.speaker_norm import SpeakerNormaliser
from emovision.errors import EmovisionError
from emovision.evaluation.report import robustness_deltas
from emovision.training.checkpoint import load_checkpoint, model_from_checkpoint
from emovision.training.cv import run_cv
from emovision.training.dataset import load_split, open_source
from emovision.training.metrics import segment_log_probs, utterance_scores
from emovision.training.options import TrainConfig

SPEAKERS = ("03", "08", "10")
FOLDS = [{"test": ["03"], "val": ["10"]}, {"test": ["08"], "val": ["10"]}]
QUICK = TrainConfig(model="alexnet_gap", epochs=1, batch_size=32, lr=3e-4, device="cpu")


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    """One stereo 22.05 kHz FLAC of hum plus noise: resampled and downmixed on loading."""
    folder = tmp_path_factory.mktemp("noise")
    t = np.arange(22050 * 2) / 22050
    hum = 0.2 * np.sin(2 * np.pi * 100 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(folder / "hum.flac", np.stack([hum, hum], axis=1).astype(np.float32), 22050)
    return folder


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, emodb_dir):
    """A finished cv run on emoDB speakers 03, 08, 10 (4 classes, 64 mels, 100 frames, 1 epoch), 2 folds."""
    root = tmp_path_factory.mktemp("robustness")
    corpus = load_corpus("emodb", emodb_dir, "4")
    corpus.utterances = [u for u in corpus.utterances if u.speaker in SPEAKERS]
    features = root / "small.h5"
    extract_corpus(corpus, FeatureConfig(n_mels=64, segment_frames=100), features, progress=False)
    folds = root / "folds.json"
    folds.write_text(json.dumps(FOLDS))
    run_cv(features, QUICK, root / "cv", folds=str(folds), progress=False)
    return root / "cv"


@pytest.fixture(scope="module")
def evaluated(cv_run, emodb_dir, noise_dir):
    """``robustness.json`` of the command on ``cv_run`` with two workers (white, babble, recorded; one room)."""
    args = ["robustness", str(cv_run), "--corpus", "emodb", "--root", str(emodb_dir), "--snr", "10,0",
            "--noise", "white,babble", "--noise-dir", str(noise_dir), "--rt60", "0.6", "--workers", "2",
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 0
    return json.loads((cv_run / "robustness.json").read_text())


def _measured_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    added = (noisy - clean).astype(np.float64)
    return 10 * np.log10(acoustics.active_power(clean, 16000) / np.mean(added**2))


def test_every_noise_type_is_added_at_the_requested_snr(emodb_wavs, noise_dir):
    speech = load_audio(emodb_wavs[3])
    talkers = [load_audio(path) for path in emodb_wavs[100:105]]
    plan = CorruptionPlan(
        snrs=(20.0, 5.0, 0.0, -5.0),
        noises=("white", "pink", "babble", "recorded"),
        rt60s=(),
        noise_files=(str(noise_dir / "hum.flac"),),
    )
    outputs = list(corrupt(speech, 16000, "03a01Fa", plan, talkers))
    assert [c.name for c, _ in outputs] == [c.name for c in plan.conditions]
    assert outputs[0][1] is speech
    for condition, noisy in outputs[1:]:
        assert noisy.shape == speech.shape
        assert _measured_snr(speech, noisy) == pytest.approx(condition.snr_db, abs=0.5), condition.name


@pytest.mark.parametrize("rt60", [0.3, 0.6, 0.9])
def test_rooms_have_the_requested_rt60_and_are_what_is_applied(emodb_wavs, rt60):
    speech = load_audio(emodb_wavs[3])
    plan = CorruptionPlan(snrs=(), noises=(), rt60s=(rt60,), seed=3)
    for key in ("03a01Fa", "08b02Wb", "10a05Nc"):
        room = room_impulse_response(rt60, 16000, key, plan)
        assert acoustics.estimate_rt60(room, 16000) == pytest.approx(rt60, rel=0.10)
    _, (condition, reverberant) = corrupt(speech, 16000, key, plan)
    assert condition.name == f"reverb {rt60:g} s"
    np.testing.assert_array_equal(reverberant, acoustics.reverberate(speech, room))


def test_corruption_depends_on_seed_and_utterance_only(emodb_wavs):
    a, b = load_audio(emodb_wavs[3]), load_audio(emodb_wavs[4])
    plan = CorruptionPlan(snrs=(10.0,), noises=("white", "pink"), rt60s=(0.5,), seed=7)

    def run(samples, key, p=plan):
        return [signal for _, signal in corrupt(samples, 16000, key, p)]

    first_a, first_b = run(a, "a"), run(b, "b")
    second_b, second_a = run(b, "b"), run(a, "a")
    for x, y in zip(first_a + first_b, second_a + second_b, strict=True):
        np.testing.assert_array_equal(x, y)
    other_seed = run(a, "a", CorruptionPlan(snrs=(10.0,), noises=("white", "pink"), rt60s=(0.5,), seed=8))
    assert not np.allclose(other_seed[1], first_a[1])


def test_babble_talkers_never_include_a_test_speaker(emodb_dir):
    by_id = {u.id: u for u in load_corpus("emodb", emodb_dir).utterances}
    pool = babble_pool(by_id, ["03", "08"])
    plan = CorruptionPlan(babble_talkers=5, seed=1)
    test_ids = [uid for uid, u in by_id.items() if u.speaker in ("03", "08")]
    chosen = {uid: babble_sources(pool, uid, plan) for uid in test_ids}
    assert all(len(ids) == 5 and len(set(ids)) == 5 for ids in chosen.values())
    assert not {by_id[t].speaker for ids in chosen.values() for t in ids} & {"03", "08"}
    assert babble_sources(list(reversed(pool)), test_ids[0], plan) == chosen[test_ids[0]]
    assert len({tuple(ids) for ids in chosen.values()}) > len(chosen) // 2


def test_bad_options_are_user_errors():
    with pytest.raises(EmovisionError, match="--snr: 'x' is not a number"):
        parse_numbers("10,x", "--snr")
    with pytest.raises(EmovisionError, match="not a finite"):
        parse_numbers("nan", "--snr")
    with pytest.raises(EmovisionError, match="positive"):
        parse_numbers("0.3,-1", "--rt60", positive=True)
    assert parse_numbers(" 30, 0,-5 ", "--snr") == (30.0, 0.0, -5.0) and parse_numbers("", "--rt60") == ()
    with pytest.raises(EmovisionError, match="unknown noise type 'brown'"):
        CorruptionPlan(noises=("white", "brown"))
    with pytest.raises(EmovisionError, match="--noise-dir"):
        CorruptionPlan(noises=("recorded",))
    with pytest.raises(EmovisionError, match="twice"):
        CorruptionPlan(snrs=(10.0, 10.0))


def test_end_to_end_clean_reproduces_the_folds_and_corruption_reaches_the_model(cv_run, evaluated):
    names = [c["name"] for c in evaluated["conditions"]]
    assert names == ["clean", "white 10 dB", "white 0 dB", "babble 10 dB", "babble 0 dB",
                     "recorded 10 dB", "recorded 0 dB", "reverb 0.6 s"]  # fmt: skip
    assert [f["run"] for f in evaluated["folds"]] == ["fold01-test-03", "fold02-test-08"]
    source = open_source(cv_run.parent / "small.h5")
    for fold in evaluated["folds"]:
        reported = json.loads((cv_run / fold["run"] / "metrics.json").read_text())["test"]
        clean = fold["conditions"]["clean"]
        assert fold["clean_matches_reported"]
        assert (clean["wa"], clean["ua"], clean["confusion"]) == (
            reported["wa"], reported["ua"], reported["confusion"],
        )  # fmt: skip
        checkpoint = load_checkpoint(cv_run / fold["run"] / "best.pth")
        split = load_split(source, fold["test"])
        scores = utterance_scores(
            segment_log_probs(model_from_checkpoint(checkpoint), split.segments),
            split.segments_per_utterance,
            checkpoint["aggregate"],
        )
        nll = -scores[np.arange(len(scores)), split.utterance_labels].mean()
        assert clean["nll"] == pytest.approx(nll, rel=1e-5)
        for name in names[1:]:
            assert fold["conditions"][name]["utterances"] == clean["utterances"]
            assert fold["conditions"][name]["nll"] != pytest.approx(clean["nll"], rel=1e-6), name
    clean = evaluated["conditions"][0]
    assert clean["ua_mean"] == pytest.approx(np.mean([f["reported"]["ua"] for f in evaluated["folds"]]))
    table = (cv_run / "robustness.md").read_text()
    assert table.index("| clean |") < table.index("| white 10 dB |") < table.index("| reverb 0.6 s |")
    assert "Clean reproduces every fold run's reported test metrics." in table
    assert (cv_run / "robustness.png").stat().st_size > 10_000


def test_results_do_not_depend_on_workers_or_other_conditions_and_report_compares_runs(
    cv_run, evaluated, emodb_dir, tmp_path, capsys
):
    copy = tmp_path / "again"
    copy.mkdir()
    for name in ("cv.json", "summary.json"):
        shutil.copy(cv_run / name, copy / name)
    for fold in evaluated["folds"]:
        (copy / fold["run"]).mkdir()
        for name in ("metrics.json", "best.pth"):
            shutil.copy(cv_run / fold["run"] / name, copy / fold["run"] / name)
    args = ["robustness", str(copy), "--root", str(emodb_dir), "--snr", "0", "--noise", "babble",
            "--rt60", "", "--workers", "1", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 0
    again = json.loads((copy / "robustness.json").read_text())
    assert [c["name"] for c in again["conditions"]] == ["clean", "babble 0 dB"]
    for first, second in zip(evaluated["folds"], again["folds"], strict=True):
        for name in ("clean", "babble 0 dB"):
            a, b = first["conditions"][name], second["conditions"][name]
            assert a["confusion"] == b["confusion"]
            assert a["nll"] == pytest.approx(b["nll"], rel=1e-5)
    capsys.readouterr()
    assert main(["report", str(cv_run), str(copy)]) == 0
    printed = capsys.readouterr().out
    assert "robustness" in printed and "reverb 0.6 s" in printed and "—" in printed
    assert main(["report", "--markdown", str(cv_run)]) == 0
    assert "| condition | cv |" in capsys.readouterr().out
    deltas = {row["condition"]: row["again"] for row in robustness_deltas([cv_run, copy])}
    assert deltas["clean"] == deltas["babble 0 dB"] == "+0.000 ± 0.000 (0/2)"
    assert deltas["white 10 dB"] == "—"


def _copy_cv(cv_run, folder):
    """The files of ``cv_run`` that robustness reads, copied to ``folder``."""
    folder.mkdir()
    for name in ("cv.json", "summary.json"):
        shutil.copy(cv_run / name, folder / name)
    for run in sorted(cv_run.glob("fold*")):
        (folder / run.name).mkdir()
        for name in ("metrics.json", "best.pth"):
            shutil.copy(run / name, folder / run.name / name)
    return folder


ROBUSTNESS_CHILD = """
import sys
from interrupt import kill_at
from emovision.evaluation import fold_cache
from emovision.cli import main

kill_at(fold_cache, "atomic_write_bytes", 1, after=True)  # the first fold's results are kept
main(sys.argv[1:])
"""


def test_a_killed_robustness_run_resumes_without_redoing_finished_folds(
    cv_run, emodb_dir, tmp_path, monkeypatch
):
    from interrupt import run_child

    from emovision.evaluation import robustness

    straight, killed = _copy_cv(cv_run, tmp_path / "straight"), _copy_cv(cv_run, tmp_path / "killed")
    args = ["--root", str(emodb_dir), "--snr", "10", "--noise", "white", "--rt60", "", "--workers", "2",
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(["robustness", str(straight), *args]) == 0
    run_child(ROBUSTNESS_CHILD, "robustness", str(killed), *args, killed=True)
    assert not (killed / "robustness.json").exists()
    assert [p.name for p in (killed / "robustness.partial").iterdir()] == ["fold01-test-03.json"]
    evaluated = []
    real = robustness._evaluate_group
    monkeypatch.setattr(
        robustness,
        "_evaluate_group",
        lambda group, *a: evaluated.append(group.runs[0].name) or real(group, *a),
    )
    assert main(["robustness", str(killed), *args]) == 0
    assert evaluated == ["fold02-test-08"] and not (killed / "robustness.partial").exists()
    first, second = (json.loads((f / "robustness.json").read_text()) for f in (straight, killed))
    assert first["folds"] == second["folds"] and first["conditions"] == second["conditions"]


def test_paired_deltas_use_only_the_folds_both_runs_share(tmp_path):
    def write(name, folds, seed=0):
        folder = tmp_path / name
        folder.mkdir()
        report = {
            "plan": {"seed": seed, "babble_talkers": 5, "noise_files": []},
            "conditions": [
                {"name": "clean", "kind": "clean", "ua_mean": 0.5, "ua_std": 0.1},
                {"name": "white 0 dB", "kind": "noise", "noise": "white", "ua_mean": 0.3, "ua_std": 0.1},
            ],
            "folds": [
                {
                    "run": run,
                    "test": [run[-2:]],
                    "conditions": {"clean": {"ua": ua}, "white 0 dB": {"ua": ua / 2}},
                }
                for run, ua in folds
            ],
        }
        (folder / "robustness.json").write_text(json.dumps(report))
        return folder

    base = write("base", [("fold01-test-03", 0.50), ("fold02-test-08", 0.40), ("fold03-test-09", 0.30)])
    better = write("better", [("fold01-test-03", 0.60), ("fold02-test-08", 0.60), ("fold04-test-10", 0.0)])
    elsewhere = write("elsewhere", [("fold01-test-13", 0.9)])
    reseeded = write("reseeded", [("fold01-test-03", 0.9)], seed=1)
    rows = robustness_deltas([base, better, elsewhere, reseeded, tmp_path / "no-robustness"])
    assert rows == [
        {
            "condition": "clean",
            "better": "+0.150 ± 0.050 (2/2)",
            "reseeded": "+0.400 ± 0.000 (1/1)",
        },
        {
            "condition": "white 0 dB",
            "better": "+0.075 ± 0.025 (2/2)",
            "reseeded": "not paired: other seed",
        },
    ]
    assert robustness_deltas([base]) == []


def test_user_errors_exit_2_with_one_line(cv_run, emodb_dir, emodb_wavs, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(cv_run / "cv.json", unfinished / "cv.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    partial = tmp_path / "partial-emodb"
    partial.mkdir()
    for path in emodb_wavs:
        if path.name.startswith(("03", "08")) and not path.name.startswith("03a01"):
            (partial / path.name).symlink_to(path)
    broken = tmp_path / "broken-emodb"
    broken.mkdir()
    for path in emodb_wavs:
        if path.name.startswith(("03", "08")):
            (broken / path.name).symlink_to(path)
    (broken / "03a01Fa.wav").unlink()
    (broken / "03a01Fa.wav").write_bytes(b"")
    base = ["robustness", "--device", "cpu", "--quiet"]
    cases = [
        ([str(tmp_path), "--root", str(emodb_dir)], "is not a cross-validation folder"),
        ([str(unfinished), "--root", str(emodb_dir)], "unfinished cross-validation"),
        ([str(cv_run), "--root", str(tmp_path / "none")], "does not exist"),
        ([str(cv_run), "--root", str(partial)], "test utterance 03a01"),
        ([str(cv_run), "--root", str(broken), "--workers", "1"], "test utterance 03a01Fa: "),
        ([str(cv_run), "--root", str(emodb_dir), "--corpus", "ravdess"], "trained on emodb"),
        ([str(cv_run), "--root", str(emodb_dir), "--snr", "20,ten"], "'ten' is not a number"),
        ([str(cv_run), "--root", str(emodb_dir), "--snr", "20,1e9"], "above the largest allowed value 100"),
        ([str(cv_run), "--root", str(emodb_dir), "--rt60", "0"], "must be positive"),
        ([str(cv_run), "--root", str(emodb_dir), "--noise", "recorded"], "needs --noise-dir"),
        ([str(cv_run), "--root", str(emodb_dir), "--noise-dir", str(empty)], "holds no"),
    ]
    for extra, message in cases:
        assert main(base[:1] + extra + base[1:]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "robustness.json").exists()


def test_iemocap_with_the_default_classes_keeps_excited_as_happy(tmp_path, emodb_wavs):
    """Preset 4 merges exc into hap: robustness reloads the corpus with the recorded selection."""
    from conftest import build_iemocap_tree

    wanted = ("F000", "M000", "F001", "M001", "F002", "M002")
    release = build_iemocap_tree(
        tmp_path, emodb_wavs[3], keep=lambda u: u.startswith(("Ses01", "Ses02")) and u.endswith(wanted)
    )
    corpus = load_corpus("iemocap", release)
    assert corpus.selection["classes"] is None
    excited = {u.id for u in corpus.utterances if u.id in _codes("exc")}
    assert any(uid.startswith("Ses01") for uid in excited)
    features = tmp_path / "iemocap.h5"
    extract_corpus(corpus, FeatureConfig(n_mels=64, segment_frames=100), features, progress=False)
    assert open_source(features).selection["corpus"] == "iemocap"
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps([{"test": ["1F"], "val": ["1M"], "train": ["2F", "2M"]}]))
    run_cv(features, QUICK, tmp_path / "cv", folds=str(folds), progress=False)
    args = ["robustness", str(tmp_path / "cv"), "--root", str(release), "--snr", "10", "--noise", "white"]
    assert main([*args, "--rt60", "", "--device", "cpu", "--quiet"]) == 0
    report = json.loads((tmp_path / "cv" / "robustness.json").read_text())
    assert len(report["folds"]) == 1 and report["conditions"][0]["name"] == "clean"


def _codes(code: str) -> set[str]:
    from conftest import IEMOCAP_LABELS

    lines = (IEMOCAP_LABELS / "emo_labels.txt").read_text().splitlines()
    return {line.split("\t")[1] for line in lines if line.split("\t")[2] == code}


def test_features_normalised_at_extraction_meet_noise_with_the_speakers_clean_statistics(tmp_path, emodb_dir):
    """Clean audio normalised by the test speaker's statistics reproduces the fold's reported
    metrics exactly; the corrupted conditions are normalised by the same (clean) statistics."""
    corpus = load_corpus("emodb", emodb_dir, "4")
    corpus.utterances = [u for u in corpus.utterances if u.speaker in SPEAKERS]
    features = tmp_path / "normalised.h5"
    config = FeatureConfig(n_mels=64, segment_frames=100, speaker_norm=True)
    extract_corpus(corpus, config, features, progress=False)
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps(FOLDS[:1]))
    run_cv(features, QUICK, tmp_path / "cv", folds=str(folds), progress=False)
    args = ["robustness", str(tmp_path / "cv"), "--corpus", "emodb", "--root", str(emodb_dir), "--snr", "10",
            "--noise", "white", "--rt60", "0.6", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 0
    (fold,) = json.loads((tmp_path / "cv" / "robustness.json").read_text())["folds"]
    assert fold["clean_matches_reported"]
    checkpoint = load_checkpoint(tmp_path / "cv" / fold["run"] / "best.pth")
    split = load_split(open_source(features), fold["test"])
    scores = utterance_scores(
        segment_log_probs(model_from_checkpoint(checkpoint), split.segments),
        split.segments_per_utterance,
        checkpoint["aggregate"],
    )
    nll = -scores[np.arange(len(scores)), split.utterance_labels].mean()
    assert fold["conditions"]["clean"]["nll"] == pytest.approx(nll, rel=1e-4)
    assert fold["conditions"]["white 10 dB"]["nll"] != pytest.approx(fold["conditions"]["clean"]["nll"])


def _ua(labels, scores) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return balanced_accuracy_score(labels, np.argmax(scores, axis=1))


def _nll(labels, scores) -> float:
    """Mean negative log-likelihood of the true class from log-probabilities ``(U, K)``."""
    return float(-np.mean(np.asarray(scores)[np.arange(len(labels)), labels]))


def test_a_pipeline_normalised_model_enrols_on_clean_recordings_and_is_scored_in_noise(
    cv_run, emodb_dir, tmp_path
):
    """Every mode on clean audio reproduces the scores the training run recorded for its test speaker
    (cold, the three enrolled draws, transductive: the features file's path), and under noise the
    transductive statistics are those of the speaker's clean recordings, recomputed here by hand."""
    features = cv_run.parent / "small.h5"
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps(FOLDS[:1]))
    run_cv(
        features,
        replace(QUICK, speaker_norm="mixed", enrol=3),
        tmp_path / "cv",
        folds=str(folds),
        progress=False,
    )
    args = ["robustness", str(tmp_path / "cv"), "--root", str(emodb_dir), "--snr", "10", "--noise", "white",
            "--rt60", "", "--device", "cpu", "--workers", "1", "--quiet"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((tmp_path / "cv" / "robustness.json").read_text())
    (fold,) = report["folds"]
    run = tmp_path / "cv" / fold["run"]
    recorded = json.loads((run / "metrics.json").read_text())
    labels = np.array(recorded["test_labels"])
    modes = recorded["test_modes"]
    clean = fold["conditions"]["clean"]
    assert fold["clean_matches_reported"] and report["enrol"] == 3
    assert clean["ua"] == pytest.approx(_ua(labels, np.array(modes["cold"]["scores"])))
    assert clean["modes"]["transductive"]["ua"] == pytest.approx(
        _ua(labels, np.array(modes["transductive"]["scores"]))
    )
    draws = modes["enrolled"]["draws"]
    kept = [np.array(d["scored"], dtype=bool) for d in draws]
    assert len(draws) == 3 and all((~k).sum() == 3 for k in kept)
    enrolled_labels = np.concatenate([labels[k] for k in kept])
    enrolled = np.concatenate([np.array(d["scores"])[k] for d, k in zip(draws, kept, strict=True)])
    assert clean["modes"]["enrolled"]["ua"] == pytest.approx(_ua(enrolled_labels, enrolled))
    assert clean["modes"]["enrolled"]["nll"] == pytest.approx(_nll(enrolled_labels, enrolled), abs=1e-4)

    checkpoint = load_checkpoint(run / "best.pth")
    config = FeatureConfig.from_dict(checkpoint["feature_config"])
    normaliser = SpeakerNormaliser.from_dict(checkpoint["speaker_norm"])
    split = load_split(open_source(features), fold["test"])
    starts = np.concatenate([[0], np.cumsum(split.segments_per_utterance)[:-1]])
    pieces = [
        split.segments[a : a + n].numpy()
        for a, n in zip(starts, split.segments_per_utterance.tolist(), strict=True)
    ]
    means = np.stack([p.mean(axis=(0, 3)) for p in pieces]).astype(np.float64)
    squares = np.stack([(p.astype(np.float64) ** 2).mean(axis=(0, 3)) for p in pieces])
    centre, spread = normaliser.statistics(means.sum(axis=0), squares.sum(axis=0), len(pieces))
    by_id = {u.id: u for u in load_corpus("emodb", emodb_dir, "4").utterances}
    plan = CorruptionPlan(snrs=(10.0,), noises=("white",), rt60s=())
    noisy = []
    for uid in recorded["test_utterance_ids"]:
        samples = load_audio(by_id[uid].path, config.sample_rate)
        ((_, signal),) = [
            c for c in corrupt(samples, config.sample_rate, uid, plan, []) if c[0].name == "white 10 dB"
        ]
        noisy.append(segment(compute_features(signal, config, by_id[uid].path.stem), config))
    normalised = torch.from_numpy(((np.concatenate(noisy) - centre) / spread).astype(np.float32))
    scores = utterance_scores(
        segment_log_probs(model_from_checkpoint(checkpoint), normalised),
        np.array([n.shape[0] for n in noisy]),
        checkpoint["aggregate"],
    )
    noisy = fold["conditions"]["white 10 dB"]["modes"]["transductive"]
    assert noisy["nll"] == pytest.approx(_nll(labels, scores), abs=1e-4)
    assert noisy["nll"] != pytest.approx(clean["modes"]["transductive"]["nll"], abs=1e-3)
    assert "enrolled-3 UA" in (tmp_path / "cv" / "robustness.md").read_text()

import pickle

import h5py
import numpy as np
import pytest

from emovision.data.features import FeatureConfig
from emovision.data.store import FeatureWriter, SpeakerFeatures, load_speakers, open_info, read_features
from emovision.errors import FeatureFileError


def _speaker(n_utt, label, segments_each=2):
    n = n_utt * segments_each
    return SpeakerFeatures(
        segments=np.random.default_rng(n).standard_normal((n, 1, 4, 5)).astype(np.float32),
        segment_labels=np.full(n, label),
        utterance_labels=np.full(n_utt, label),
        segments_per_utterance=np.full(n_utt, segments_each),
        utterance_ids=[f"u{label}{i}" for i in range(n_utt)],
        durations=np.full(n_utt, 1.5, dtype=np.float32),
        gender="F",
    )


def test_round_trip_and_seed_structure(tmp_path):
    config = FeatureConfig(kind="logspec", segment_frames=5)
    writer = FeatureWriter(tmp_path / "f.h5", "test", ["a", "b"], config)
    writer.write_speaker("s1", _speaker(3, 0))
    writer.write_speaker("s2", _speaker(2, 1))
    assert not (tmp_path / "f.h5").exists()
    writer.finish()
    info = open_info(tmp_path / "f.h5")
    assert (info.classes, info.config, info.speakers, info.genders["s1"]) == (
        ["a", "b"],
        config,
        ["s1", "s2"],
        "F",
    )
    seed = read_features(tmp_path / "f.h5")
    segments, utt_labels, seg_labels, per_utt = seed["s2"]
    assert segments.shape == (4, 1, 4, 5) and list(utt_labels) == [1, 1]
    assert list(seg_labels) == [1] * 4 and list(per_utt) == [2, 2]
    assert load_speakers(tmp_path / "f.h5", ["s1"])["s1"].utterance_ids == ["u00", "u01", "u02"]


def test_interrupted_write_resumes_and_other_job_restarts(tmp_path):
    config = FeatureConfig()
    first = FeatureWriter(tmp_path / "f.h5", "c", ["a", "b"], config)
    first.write_speaker("s1", _speaker(1, 0))
    first.close()
    with pytest.raises(FeatureFileError, match="unfinished extraction"):
        open_info(tmp_path / "f.h5")
    again = FeatureWriter(tmp_path / "f.h5", "c", ["a", "b"], config)
    assert again.done_speakers() == {"s1"}
    again.close()
    other = FeatureWriter(tmp_path / "f.h5", "c", ["a", "b"], FeatureConfig(kind="logspec"))
    assert other.done_speakers() == set()
    other.close()


def test_wrong_files_are_refused(tmp_path):
    with pytest.raises(FeatureFileError, match="does not exist"):
        open_info(tmp_path / "none.h5")
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(FeatureFileError, match="not an HDF5"):
        open_info(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["x"] = [1, 2]
    with pytest.raises(FeatureFileError, match="not an emovision features file"):
        open_info(other)


def test_pickle_needs_explicit_trust(tmp_path):
    path = tmp_path / "legacy.pkl"
    path.write_bytes(pickle.dumps({"1F": _speaker(2, 0).as_seed_tuple()}))
    with pytest.raises(FeatureFileError, match="--trust-pickle"):
        read_features(path)
    assert read_features(path, trust_pickle=True)["1F"][0].shape == (4, 1, 4, 5)

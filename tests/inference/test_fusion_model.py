"""The deployed fusion's scaling of functionals, against scikit-learn's own transformers."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer

from emovision.errors import CheckpointError
from emovision.inference.fusion_model import LinearFusion, quantile_normal


def _heavy_tailed(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Cauchy columns, a column of three repeated values (ties) and a constant one."""
    return np.concatenate(
        [rng.standard_cauchy((rows, 4)), rng.integers(0, 3, (rows, 1)).astype(float), np.ones((rows, 1))],
        axis=1,
    )


def test_quantile_scaling_maps_as_scikit_learn_does_ties_and_outliers_included():
    rng = np.random.default_rng(0)
    train = _heavy_tailed(rng, 400)
    reference = QuantileTransformer(n_quantiles=100, output_distribution="normal").fit(train)
    # training rows, new rows, values far outside the training range and exactly at its ends
    new = np.concatenate(
        [train[:30], 50 * _heavy_tailed(rng, 30), train.min(axis=0)[None], train.max(axis=0)[None]]
    )
    ours = quantile_normal(new, reference.quantiles_, reference.references_)
    assert np.allclose(ours, reference.transform(new), atol=1e-12)
    assert np.abs(ours).max() < 5.3  # nothing beyond the clipped tails


def test_a_quantile_scaled_fusion_scores_as_its_pipeline_and_survives_saving(tmp_path):
    rng = np.random.default_rng(1)
    x = _heavy_tailed(rng, 300)
    y = (x[:, 0] > 0).astype(int) + (x[:, 4] > 1).astype(int)
    pipeline = make_pipeline(
        QuantileTransformer(n_quantiles=50, output_distribution="normal"), LogisticRegression(C=0.5)
    ).fit(x, y)
    fusion = LinearFusion.from_pipeline(
        pipeline, feature_set="test", sample_rate=16000, classes=["a", "b", "c", "d"], weight=0.3,
        temperature=1.2, info={},
    )  # fmt: skip
    assert fusion.scaling == "quantile" and fusion.mean is None
    expected = np.log(np.clip(pipeline.predict_proba(x), 1e-6, None))
    assert np.allclose(fusion.linear_log_probs(x)[:, :3], expected, atol=1e-9)
    assert np.allclose(fusion.linear_log_probs(x)[:, 3], np.log(1e-6))  # class d never trained
    path = fusion.save(tmp_path / "fusion-model.npz")
    again = LinearFusion.load(path)
    assert again.scaling == "quantile" and again.describe()["scaling"] == "quantile"
    assert np.array_equal(again.linear_log_probs(x), fusion.linear_log_probs(x))
    with np.load(path) as data:  # a file that names a scaling this version does not know
        arrays = dict(data)
    arrays["meta"] = np.array(str(arrays["meta"]).replace('"scaling": "quantile"', '"scaling": "rank"'))
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(CheckpointError, match="newer emovision"):
        LinearFusion.load(tmp_path / "other.npz")
    arrays["meta"] = np.array(str(arrays["meta"]).replace('"rank"', '"quantile"'))
    arrays["quantiles"] = arrays["quantiles"][:, :3]
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(CheckpointError, match="inconsistent shapes"):
        LinearFusion.load(tmp_path / "cut.npz")

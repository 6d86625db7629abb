"""Per-input surprise: a categorical input's surprise grows no faster than its improbability."""

from __future__ import annotations

import numpy as np
import pytest

from netids.detect.calibration import Calibrator, InputSurprise, nines_of, scores_of


def test_a_rare_value_of_an_input_that_is_nearly_always_exact_is_as_surprising_as_it_is_rare():
    rng = np.random.default_rng(0)
    # inverse probabilities of a categorical input the network nearly always gets right:
    # the top percent of training errors is rounding noise
    errors = np.exp(rng.exponential(1e-4, size=(20000, 1)))
    rare = np.array([[np.exp(8.0)]])  # a value the network gave a probability of e**-8
    floor = InputSurprise.fit(errors, min_tail_scale=1.0)
    assert InputSurprise.fit(errors).transform(rare)[0, 0] > 1000  # the noise, extrapolated
    assert 8.0 < floor.transform(rare)[0, 0] < 8.0 + 5.0  # 8 nats, and 4.6 for leaving the body
    assert floor.transform(np.exp(np.array([[1e-5]])))[0, 0] < 5  # a typical error


def test_surprise_follows_the_empirical_cdf_in_the_body_and_the_fitted_tail_past_it():
    rng = np.random.default_rng(1)
    errors = rng.lognormal(size=(50000, 3)) * np.array([1e-6, 1.0, 1e3])  # units do not matter
    surprise = InputSurprise.fit(errors)
    fresh = rng.lognormal(size=(50000, 3)) * np.array([1e-6, 1.0, 1e3])
    s = surprise.transform(fresh)
    # surprise is -log P(normal error >= e): about 1% of fresh normal errors exceed log(100)
    np.testing.assert_allclose((s > np.log(100.0)).mean(axis=0), 0.01, atol=0.002)
    # past the largest knot, linear in log error with the fitted tail's slope
    top = np.exp(surprise.knots[:, -1])
    far = surprise.transform(np.stack([top * np.e ** 2, top * np.e ** 4]))
    np.testing.assert_allclose(far[1] - far[0], 2.0 / surprise.tail_scale, rtol=1e-4)
    # a missing or infinite error is the most surprising there is, and still a number
    odd = surprise.transform(np.array([[np.nan, 0.0, np.inf]]))[0]
    assert odd[0] > 100 and odd[1] < 1.0 and odd[2] > 100 and np.isfinite(odd).all()


def test_nines_keep_ranking_the_tail_where_printed_scores_tie() -> None:
    cal = Calibrator.fit(np.random.default_rng(0).lognormal(size=5000))
    raw = np.logspace(3, 300, 50)  # far past the largest normal error
    scores, nines = cal.transform(raw), cal.nines(raw)
    assert len(np.unique(np.round(scores, 6))) <= 2  # six decimals: all but one read 1.000000
    assert np.all(np.diff(nines) > 0)  # the nines keep their order
    assert scores.max() < 1.0  # a threshold of 1 still flags nothing
    np.testing.assert_allclose(scores_of(nines), scores)
    assert nines_of(0.999) == pytest.approx(3.0)

"""Per-input surprise: a categorical input's surprise grows no faster than its improbability."""

from __future__ import annotations

import numpy as np

from netids.calibration import InputSurprise


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

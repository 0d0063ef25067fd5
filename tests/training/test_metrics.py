"""GEO-BLEU, DTW, accuracy@k and distance error against hand-computed small cases and the reference example."""

import math

import numpy as np
import pytest

from models.grid import cell_id
from training import metrics


def test_geobleu_identical_is_one_and_far_apart_is_about_zero():
    traj = [(10, 10), (11, 10), (12, 12), (12, 13), (40, 40)]
    assert metrics.geobleu(traj, traj) == pytest.approx(1.0)
    far = [(x + 100, y + 100) for x, y in traj]
    assert metrics.geobleu(far, traj) < 1e-20


def test_geobleu_hand_computed():
    # generated (0,0),(1,0); reference (0,0),(0,0): unigram proximities e^0=1 and e^-0.5 (1 cell apart)
    # p1: greedy takes a 1 (sys 0 - ans 0), then sys 1 - ans 1 = e^-0.5 -> (1 + e^-0.5) / 2
    # p2: the one bigram pair: 1 * e^-0.5; equal lengths -> no brevity penalty; N = min(3, 2) = 2
    got = metrics.geobleu([(0, 0), (1, 0)], [(0, 0), (0, 0)])
    p1, p2 = (1 + math.exp(-0.5)) / 2, math.exp(-0.5)
    assert got == pytest.approx(math.sqrt(p1 * p2))


def test_geobleu_brevity_penalty_for_short_generated():
    # 1 generated point matched exactly against 2 reference points: p1 = 1, BP = exp(1 - 2/1)
    assert metrics.geobleu([(5, 5)], [(5, 5), (5, 5)]) == pytest.approx(math.exp(-1.0))


def test_geobleu_and_dtw_match_the_reference_packages_readme_example():
    # the example in yahoojapan/geobleu's README: (d, t, x, y) rows of one uid over three days
    gen = np.array([(60, 12, 84, 88), (60, 15, 114, 78), (60, 21, 121, 96), (61, 12, 78, 86), (61, 13, 89, 67),
                    (61, 17, 97, 70), (61, 20, 96, 70), (61, 24, 111, 80), (61, 25, 114, 78), (61, 26, 99, 70),
                    (61, 38, 77, 86), (62, 12, 77, 86), (62, 14, 102, 129), (62, 15, 104, 131), (62, 17, 106, 131),
                    (62, 18, 104, 110)])
    ref = np.array([(60, 12, 82, 93), (60, 15, 114, 78), (60, 21, 116, 96), (61, 12, 82, 84), (61, 13, 89, 67),
                    (61, 17, 97, 70), (61, 20, 91, 67), (61, 24, 109, 82), (61, 25, 110, 78), (61, 26, 99, 70),
                    (61, 38, 77, 86), (62, 12, 77, 86), (62, 14, 97, 125), (62, 15, 104, 131), (62, 17, 106, 131),
                    (62, 18, 103, 111)])
    uid = np.zeros(len(gen), dtype=int)
    args = (uid, gen[:, 0], gen[:, 1], gen[:, 2:], ref[:, 2:])
    assert metrics.per_user_day(metrics.geobleu, *args) == pytest.approx(0.21733678721880598, abs=1e-12)
    assert metrics.per_user_day(metrics.dtw_km, *args) == pytest.approx(5.889002930255253, abs=1e-9)


def test_dtw_hand_computed():
    assert metrics.dtw_km([(1, 1), (2, 2)], [(1, 1), (2, 2)]) == 0.0
    # (0,0),(2,0) against (0,0),(0,0),(2,0): warps the repeated point for free -> 0
    assert metrics.dtw_km([(0, 0), (2, 0)], [(0, 0), (0, 0), (2, 0)]) == 0.0
    # one point 4 cells (2 km) away from both reference points: both must align to it -> 2 + 2 km
    assert metrics.dtw_km([(0, 4)], [(0, 0), (0, 0)]) == pytest.approx(4.0)
    # (0,0),(0,2) vs (0,1),(0,1): best path is the diagonal, 0.5 km + 0.5 km
    assert metrics.dtw_km([(0, 0), (0, 2)], [(0, 1), (0, 1)]) == pytest.approx(1.0)


def test_per_user_day_means_days_then_users():
    # user 0: two days with DTW 1 km and 3 km -> 2; user 1: one day with 0 -> mean over users = 1
    uid = np.array([0, 0, 1])
    d = np.array([0, 1, 0])
    t = np.array([5, 5, 5])
    pred = np.array([(0, 2), (0, 6), (3, 3)])
    true = np.array([(0, 0), (0, 0), (3, 3)])
    assert metrics.per_user_day(metrics.dtw_km, uid, d, t, pred, true) == pytest.approx(1.0)


def test_accuracy_and_distance():
    ranked = np.array([[1, 2, 3, 4, 5], [9, 8, 7, 6, 5], [0, 0, 0, 0, 7]])
    truth = np.array([1, 5, 3])
    assert metrics.accuracy_at_k(ranked, truth, 1) == pytest.approx(1 / 3)
    assert metrics.accuracy_at_k(ranked, truth, 5) == pytest.approx(2 / 3)
    a, b = cell_id(np.array([1, 10]), np.array([1, 10])), cell_id(np.array([4, 10]), np.array([5, 10]))
    assert metrics.distance_km(a, b) == pytest.approx([2.5, 0.0])  # 3-4-5 triangle of 500 m cells
    with pytest.raises(ValueError, match="accuracy@5"):
        metrics.accuracy_at_k(ranked[:, :2], truth, 5)

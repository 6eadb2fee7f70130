"""Tests of the Telemanom-style dynamic threshold: hand-computed answers, chunked == whole."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from satwatch.exceptions import DataError
from satwatch.pipeline.dynamic_threshold import (
    ArrivalState,
    DynamicSettings,
    choose_epsilon,
    choose_epsilons,
    confirm_series,
    decide_and_confirm,
    decide_on_arrival,
    decide_tail,
    ewma,
    surviving_runs,
    surviving_runs_of_rows,
)


def test_choose_epsilon_hand_computed() -> None:
    # mean 1, std 3. z = 2.5 -> epsilon 8.5: one value above, one run; removing it leaves
    # mean 0 and std 0, so the score is (1 + 1) / (1 + 1) = 1. z = 3 -> epsilon 10: nothing
    # strictly above, not a candidate.
    values = np.array([0.0] * 9 + [10.0])
    settings = DynamicSettings(z_min=2.5, z_max=3.0, z_step=0.5)
    assert choose_epsilon(values, settings) == pytest.approx(8.5)


def test_choose_epsilon_falls_back_to_the_largest_z() -> None:
    # Constant window: no spread, nothing can be above; a flat window gives mean + z_max * 0.
    assert choose_epsilon(np.full(7, 2.0), DynamicSettings()) == 2.0
    # Too many runs for max_sequences = 1: two separate spikes at every z that catches both.
    values = np.array([0.0, 10.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    settings = DynamicSettings(z_min=1.0, z_max=2.0, z_step=1.0, max_sequences=1)
    mean, std = values.mean(), values.std()
    assert choose_epsilon(values, settings) == pytest.approx(mean + 2.0 * std)


def test_windows_thresholded_together_equal_one_by_one() -> None:
    # How a chunk's batch ends are thresholded: every row as if alone, bit for bit, flat and
    # spiky windows and the fallback to the largest z included.
    rng = np.random.default_rng(3)
    windows = rng.gamma(1.5, 1.0, (12, 300))
    windows[::3, 120] += 25.0
    windows[1] = 2.0
    windows[4, ::7] = 40.0  # too many runs for max_sequences: the largest z
    settings = DynamicSettings(max_sequences=2)
    together = choose_epsilons(windows, settings)
    alone = [choose_epsilon(window, settings) for window in windows]
    assert together.tolist() == alone
    assert together[1] == 2.0
    assert together[4] == pytest.approx(windows[4].mean() + 12.0 * windows[4].std())


def test_a_streams_first_windows_thresholded_together_equal_one_by_one() -> None:
    # Before the window fills, a chunk's batch ends see prefixes of the stream, shorter rows
    # padded with -inf: each must get what it gets alone, bit for bit, and the same runs.
    rng = np.random.default_rng(8)
    stream = rng.gamma(1.5, 1.0, 400)
    stream[[30, 31, 200]] += 25.0
    stream[:12] = 3.0  # flat windows at the very start
    stream[40:] *= rng.uniform(1.0, 1e4, 360)  # a wide range: the order of a sum shows
    lengths = np.array([1, 2, 9, 12, 13, 31, 32, 57, 150, 201, 257, 333, 399, 400])
    rows = np.where(np.arange(400) < lengths[:, None], stream[None, :], -np.inf)
    settings = DynamicSettings(max_sequences=2)
    together = choose_epsilons(rows, settings, lengths)
    alone = [choose_epsilon(stream[:n], settings) for n in lengths]
    assert together.tolist() == alone
    runs = surviving_runs_of_rows(rows, together, 0.13, lengths)
    expected = [surviving_runs(stream[:n], e, 0.13) for n, e in zip(lengths, alone, strict=True)]
    assert runs == expected
    assert any(runs)
    # Every value above epsilon: the chain ends at 0, as for one window.
    below_all = np.full(lengths.size, -1.0)
    expected = [surviving_runs(stream[:n], -1.0, 0.13) for n in lengths]
    assert surviving_runs_of_rows(rows, below_all, 0.13, lengths) == expected


def _epsilon_by_the_formula(values: np.ndarray, settings: DynamicSettings) -> float:
    """The module doc's step 2 written out plainly: every z tried on the whole window."""
    mean, std = values.mean(), values.std()
    best, best_score = mean + settings.z_max * std, -np.inf
    for z in settings.z_values:
        epsilon = mean + z * std
        above = values > epsilon
        n_above = int(above.sum())
        n_runs = int((above & ~np.concatenate([[False], above[:-1]])).sum())
        if not (0 < n_above < values.size / 2 and n_runs <= settings.max_sequences):
            continue
        below = values[~above]
        d_mean = (mean - below.mean()) / mean if mean > 0 else 0.0
        score = (d_mean + (std - below.std()) / std) / (n_above + n_runs**2)
        if score > best_score:
            best, best_score = epsilon, score
    return float(best)


def test_windows_choose_the_z_the_formula_chooses() -> None:
    # Only the values above the smallest candidate are looked at: the choice must still be
    # the one the formula makes over the whole window, spikes, plateaus and runs included.
    rng = np.random.default_rng(7)
    settings = DynamicSettings(max_sequences=3)
    for trial in range(60):
        window = rng.gamma(rng.uniform(0.3, 3.0), 1.0, 500)
        window[rng.integers(0, 500, trial % 6)] += rng.uniform(2.0, 30.0)
        window[100 : 100 + trial % 40] += trial % 5  # a plateau of a few steps
        expected = _epsilon_by_the_formula(window, settings)
        assert choose_epsilon(window, settings) == pytest.approx(expected, rel=1e-12), trial


def test_pruning_keeps_runs_down_to_the_last_big_drop() -> None:
    # Run maxima 10 (step 3), 9.5 (step 5), 5 (step 1); largest value below epsilon 4.6.
    # Drops: 10 -> 9.5 is 5 % (< 13 %), 9.5 -> 5 is 47 % (keep the top two), 5 -> 4.6 is 8 %.
    values = np.array([0.0, 5.0, 0.0, 10.0, 0.0, 9.5, 0.0, 4.6])
    assert surviving_runs(values, 4.8, 0.13) == [(3, 3), (5, 5)]
    # With no drop of 13 % anywhere, nothing survives: 10 -> 9 is 10 %.
    assert surviving_runs(np.array([9.0, 0.0, 10.0]), 9.5, 0.13) == []
    # A run of several steps counts once, by its maximum.
    assert surviving_runs(np.array([0.0, 3.0, 6.0, 0.0]), 1.0, 0.13) == [(1, 2)]


def _runs_by_the_rule(values: np.ndarray, epsilon: float, min_decrease: float) -> list:
    """Step 3 of the module doc written out plainly, one window, one step at a time."""
    runs, start = [], None
    for i, value in enumerate(values):
        if value > epsilon and start is None:
            start = i
        if value <= epsilon and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(values) - 1))
    below = [v for v in values if v <= epsilon]
    ranked = sorted(runs, key=lambda run: -max(values[run[0] : run[1] + 1]))  # stable: ties by step
    chain = [max(values[s : e + 1]) for s, e in ranked] + [max(below) if below else 0.0]
    keep = 0
    for i in range(len(ranked)):
        if chain[i] > 0 and (chain[i] - chain[i + 1]) / chain[i] >= min_decrease:
            keep = i + 1
    return sorted(ranked[:keep])


def test_rows_are_pruned_together_as_each_alone_by_the_rule() -> None:
    # A chunk's windows are pruned in one call; each row must get the rule's runs for it alone,
    # ties between maxima, rows with every value above and rows with none included.
    rng = np.random.default_rng(11)
    for trial in range(200):
        rows, width = int(rng.integers(1, 12)), int(rng.integers(1, 120))
        windows = rng.gamma(rng.uniform(0.3, 3.0), 1.0, (rows, width))
        if trial % 3 == 0:
            windows = np.round(windows, 1)  # equal maxima
        windows[rng.random((rows, width)) < 0.03] += rng.uniform(1.0, 20.0)
        epsilons = np.quantile(windows, rng.uniform(0.6, 1.0), axis=1)
        epsilons[0] = -1.0 if trial % 4 == 0 else epsilons[0]  # every value above
        min_decrease = float(rng.choice([0.0, 0.13, 0.5]))
        together = surviving_runs_of_rows(windows, epsilons, min_decrease)
        for k in range(rows):
            expected = _runs_by_the_rule(windows[k], epsilons[k], min_decrease)
            assert together[k] == expected, (trial, k)
            assert surviving_runs(windows[k], epsilons[k], min_decrease) == expected


def test_ewma_smoothing_hand_computed() -> None:
    # span 3 -> alpha 0.5: 2, 0.5 * 4 + 0.5 * 2 = 3, 0.5 * 8 + 0.5 * 3 = 5.5.
    level, smoothed = ewma(np.array([2.0, 4.0, 8.0]), span=3)
    assert smoothed.tolist() == [2.0, 3.0, 5.5] and level == 5.5
    # Continuing from a level: 0.5 * 1 + 0.5 * 5.5.
    assert ewma(np.array([1.0]), 3, level)[1].tolist() == [3.25]


HAND = DynamicSettings(span=1, window=20, batch=5, z_min=1.0, z_max=1.0, min_decrease=0.13)


def test_decisions_on_arrival_by_hand() -> None:
    x = np.zeros(25)
    x[12:17] = 10.0  # a run across the batch ending at step 14
    x[23] = 10.0  # a lone step as high as the run that survived
    smoothed, decision, state = decide_on_arrival(x, ArrivalState(), 0, HAND)
    np.testing.assert_array_equal(smoothed, x)  # span 1: no smoothing
    # Steps 0-3: no threshold yet. Steps 4 and 9 end batches of zeros: epsilon 0, no run, so
    # the cut is the window's max 0 / (1 - p) = 0. 12, 13: above both, a new run. Step 14 ends
    # batch 3: window 0..14 has mean 2, std 4, epsilon 6; the run 12..14 survives pruning and
    # holds step 14. 15, 16 go on above 6; 17 falls. Step 19: the run ends before it. Step 23:
    # a new run above epsilon 6.83 that reaches the cut (10, the smallest surviving maximum).
    assert np.flatnonzero(decision).tolist() == [12, 13, 14, 15, 16, 23]
    assert state.epsilon == pytest.approx(3.0 + np.sqrt(21.0), rel=1e-6)  # batch ending at 24
    assert state.cut == 10.0 and not state.flagged and state.history.size == 20


def _floor(step: int, settings: DynamicSettings) -> float:
    """The floor at a stream step: raised by ``early_floor`` over the first ``early_steps``."""
    early = step < settings.early_steps
    return settings.min_score * (settings.early_floor if early else 1.0)


def _arrival_by_the_rule(scores: np.ndarray, settings: DynamicSettings) -> np.ndarray:
    """decide_and_confirm's on-arrival rule stepped plainly, one step at a time."""
    smoothed = ewma(scores, settings.span)[1]
    epsilon, cut, flagged, decisions = float("nan"), float("inf"), False, []
    for i, value in enumerate(smoothed):
        if (i + 1) % settings.batch == 0:
            window = smoothed[max(0, i + 1 - settings.window) : i + 1]
            epsilon = float(np.float32(choose_epsilon(window, settings)))
            kept = surviving_runs(window, choose_epsilon(window, settings), settings.min_decrease)
            flagged = bool(kept) and kept[-1][1] == window.size - 1 and value > _floor(i, settings)
            top = float(np.float32(window.max() / (1 - settings.min_decrease)))
            cut = min(window[a : b + 1].max() for a, b in kept) if kept else top
        elif epsilon != epsilon:
            flagged = False
        else:
            above = value > epsilon and value > _floor(i, settings)
            flagged = above and (flagged or value >= cut)
        flagged = flagged and i >= settings.burn_in
        decisions.append(flagged)
    return np.array(decisions)


def test_decisions_on_arrival_are_the_rule_stepped_one_at_a_time() -> None:
    # The served pass decides a chunk's steps in a few array operations; each decision must be
    # the one the rule makes step by step, floor, burn-in and runs across batch ends included.
    rng = np.random.default_rng(4)
    for trial in range(40):
        scores = rng.gamma(rng.uniform(0.5, 3.0), 0.5, int(rng.integers(100, 700)))
        for start in rng.integers(0, scores.size, 4):
            scores[start : start + int(rng.integers(1, 40))] += rng.uniform(0.5, 8.0)
        scores[50:90] += rng.uniform(2.0, 6.0, 40)  # a run across the burn-in
        settings = DynamicSettings(
            window=int(rng.choice([40, 200])),
            batch=int(rng.choice([1, 5, 10])),
            span=int(rng.choice([1, 5])),
            # Below epsilon, and where runs go in and out of it above epsilon.
            min_score=float(rng.choice([0.0, np.quantile(scores, 0.97)])),
            burn_in=int(rng.choice([0, 73])),  # inside a batch
            early_steps=int(rng.choice([0, 47, 300])),
            early_floor=float(rng.choice([1.0, 2.0])),
        )
        _, decision, _ = decide_on_arrival(scores, ArrivalState(), 0, settings)
        np.testing.assert_array_equal(decision, _arrival_by_the_rule(scores, settings), trial)
    # A step at the floor ends the run, so the next step, above the floor but below the cut,
    # is normal (step 32 at 6.5, step 33 at 7.1).
    scores = np.zeros(60)
    scores[28:37] = [4.8, 7.9, 7.2, 6.9, 6.5, 7.1, 6.1, 9.7, 5.8]
    scores[45:50] = [9.8, 9.4, 9.1, 10.0, 9.2]
    settings = DynamicSettings(window=60, batch=10, span=1, min_score=6.5, burn_in=23)
    _, decision, _ = decide_on_arrival(scores, ArrivalState(), 0, settings)
    np.testing.assert_array_equal(decision, _arrival_by_the_rule(scores, settings))
    assert not decision[33]


def test_floor_keeps_low_runs_normal() -> None:
    x = np.zeros(25)
    x[12:17] = 10.0
    _, decision, _ = decide_on_arrival(x, ArrivalState(), 0, replace(HAND, min_score=10.0))
    assert not decision.any()
    assert not confirm_series(x, replace(HAND, min_score=10.0)).decision.any()


def test_single_spike_is_the_only_confirmed_decision() -> None:
    scores = np.array([0.0] * 20 + [10.0] + [0.0] * 5)
    result = confirm_series(scores, DynamicSettings(window=100, batch=1))
    assert result.decision.tolist() == [i == 20 for i in range(26)]
    np.testing.assert_array_equal(result.smoothed, scores)


@pytest.mark.parametrize("batch", [1, 4])
def test_burn_in_keeps_the_first_steps_normal_in_both_rules(batch: int) -> None:
    scores = np.array([0.0] * 20 + [10.0] + [0.0] * 7)
    for burn_in, expected in ((20, True), (21, False)):
        settings = DynamicSettings(window=100, batch=batch, burn_in=burn_in)
        confirmed = confirm_series(scores, settings).decision
        _, arrival, _ = decide_on_arrival(scores, ArrivalState(), 0, settings)
        assert confirmed.any() == expected and confirmed.sum() <= 1
        assert arrival[20] == expected, burn_in
    # Streams are counted from their first step: a later chunk is past the burn-in.
    _, later, _ = decide_on_arrival(scores, ArrivalState(), 100, DynamicSettings(burn_in=21))
    assert later[20]


@pytest.mark.parametrize("batch", [1, 4])
def test_early_floor_raises_the_floor_for_the_first_steps_only(batch: int) -> None:
    # A spike of 10, above a floor of 6 and below three times it: normal inside the first
    # early_steps steps, anomalous after them, in both rules.
    scores = np.array([0.0] * 40 + [10.0] + [0.0] * 7)
    for early_steps, expected in ((41, False), (40, True)):
        settings = DynamicSettings(
            window=100, batch=batch, min_score=6.0, early_steps=early_steps, early_floor=3.0
        )
        confirmed = confirm_series(scores, settings).decision
        _, arrival, _ = decide_on_arrival(scores, ArrivalState(), 0, settings)
        assert confirmed.any() == expected and arrival[40] == expected, early_steps
    # A run above the raised floor is anomalous inside the first steps too.
    high = DynamicSettings(window=100, batch=batch, min_score=3.0, early_steps=41, early_floor=3)
    assert confirm_series(scores, high).decision[40]


def test_batches_are_confirmed_when_they_complete() -> None:
    settings = DynamicSettings(window=10, batch=2)
    head = decide_and_confirm(np.arange(5.0), ArrivalState(), 0, settings)
    assert (head.confirmed_first, head.confirmed.size, head.decision.size) == (0, 4, 5)
    # Two more steps complete the batch of steps 4-5; step 6 waits.
    more = decide_and_confirm(np.arange(2.0), head.state, 5, settings)
    assert (more.confirmed_first, more.confirmed.size) == (4, 2)
    # At the end of the series, the batch rule decides the waiting step over the last window.
    tail, _ = decide_tail(more.state.history, 1, 6, settings)
    assert tail.size == 1


def _series(seed: int, length: int = 800) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = np.abs(rng.normal(size=length))
    for start in rng.integers(100, length - 50, size=4):
        scores[start : start + rng.integers(3, 30)] += rng.uniform(3, 12)
    return scores


def _batch_rule(scores: np.ndarray, settings: DynamicSettings, warm: np.ndarray) -> np.ndarray:
    """Telemanom's batch rule written out: each batch decided over the window ending with it."""
    level, history = ewma(warm, settings.span)
    smoothed = np.concatenate([history, ewma(scores, settings.span, level)[1]])
    decisions = []
    for first in range(0, scores.size, settings.batch):
        end = warm.size + min(first + settings.batch, scores.size)  # exclusive, in smoothed
        window = smoothed[max(0, end - settings.window) : end]
        count = end - warm.size - first
        decisions.append(decide_tail(window, count, first, settings)[0])
    return np.concatenate(decisions)


SETTINGS = [
    (DynamicSettings(span=5, window=200, batch=1), [1, 2, 199, 200, 201, 577]),
    (DynamicSettings(span=20, window=400, batch=70), [1, 69, 70, 71, 500, 701]),
    (DynamicSettings(span=1, window=250, batch=7, min_score=1.0), [3, 10, 11, 700]),
    (DynamicSettings(span=3, window=300, batch=10, burn_in=450), [5, 449, 451, 640]),
    (
        DynamicSettings(span=1, window=250, batch=7, min_score=1.0, early_steps=333, early_floor=4),
        [3, 332, 334, 700],
    ),
]


@pytest.mark.parametrize(("settings", "cuts"), SETTINGS)
def test_confirmations_are_the_batch_rule(settings: DynamicSettings, cuts: list[int]) -> None:
    scores, warm = _series(len(cuts)), _series(99, 500)
    whole = confirm_series(scores, settings, warm=warm).decision
    assert whole.size == scores.size
    assert whole.any() and not whole.all()
    np.testing.assert_array_equal(whole, _batch_rule(scores, settings, warm))


@pytest.mark.parametrize(("settings", "cuts"), SETTINGS)
def test_chunked_with_fp32_state_equals_whole(settings: DynamicSettings, cuts: list[int]) -> None:
    scores = _series(len(cuts))
    whole = decide_and_confirm(scores, ArrivalState(), 0, settings)
    state, offset, smoothed, decisions, confirmed = ArrivalState(), 0, [], [], []
    for chunk in np.split(scores, cuts):
        # The state survives an FP32 tensor unchanged (how the served model carries it).
        state = ArrivalState.from_array(state.to_array().astype(np.float32))
        part = decide_and_confirm(chunk, state, offset, settings)
        smoothed.append(part.smoothed)
        decisions.append(part.decision)
        confirmed.append(part.confirmed)
        state, offset = part.state, offset + chunk.size
    np.testing.assert_array_equal(np.concatenate(smoothed), whole.smoothed)
    np.testing.assert_array_equal(np.concatenate(decisions), whole.decision)
    np.testing.assert_array_equal(np.concatenate(confirmed), whole.confirmed)
    np.testing.assert_array_equal(state.to_array(), whole.state.to_array())


def test_decisions_do_not_depend_on_later_steps() -> None:
    scores = _series(5)
    settings = DynamicSettings(span=5, window=200, batch=1)
    full = confirm_series(scores, settings).decision
    cut = confirm_series(scores[:500], settings).decision
    assert full.any() and np.array_equal(full[:500], cut)
    _, arrival, _ = decide_on_arrival(scores, ArrivalState(), 0, settings)
    _, arrival_cut, _ = decide_on_arrival(scores[:500], ArrivalState(), 0, settings)
    assert np.array_equal(arrival[:500], arrival_cut)


def test_errors_name_the_problem() -> None:
    with pytest.raises(DataError, match="batch: expected at most the window"):
        DynamicSettings(window=10, batch=20)
    with pytest.raises(DataError, match="min_decrease"):
        DynamicSettings(min_decrease=1.5)
    with pytest.raises(DataError, match="floor: expected one of pot, max, got 'median'"):
        DynamicSettings.from_parameters({"dt_floor": "median"})
    with pytest.raises(DataError, match="burn_in: expected 0 or more, got -1"):
        DynamicSettings(burn_in=-1)
    with pytest.raises(DataError, match="early_steps: expected 0 or more, got -5"):
        DynamicSettings(early_steps=-5)
    with pytest.raises(DataError, match="early_floor: expected 1 or more, got 0.5"):
        DynamicSettings.from_parameters({"dt_early_floor": "0.5"})
    with pytest.raises(DataError, match="not finite"):
        confirm_series(np.array([1.0, np.nan]), DynamicSettings())
    with pytest.raises(DataError, match=r"\[level, epsilon, cut, flagged, n, n values\]"):
        ArrivalState.from_array(np.array([1.0, 2.0, 3.0, 0.0, 4.0, 1.0]))
    with pytest.raises(DataError, match="dt_window"):
        DynamicSettings.from_parameters({"dt_window": "big"})
    assert DynamicSettings.from_parameters({"dt_window": "900", "dt_min_decrease": "0.2"}) == (
        DynamicSettings(window=900, min_decrease=0.2)
    )

"""gridflow.study.rotation: rolling-blackout schedules (obligation, cap, fairness, reporting, input errors)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gridflow.errors import ScenarioError
from gridflow.study.rotation import OE417_THRESHOLD_MW, rotate, rotate_zones

TOL = 1e-6


def _runs_ok(s) -> None:
    """Every property the module promises, checked on one schedule."""
    T, n = s.dark.shape
    mw, need = s.block_mw, s.obligation_mw
    cap = s.cap_intervals
    np.testing.assert_allclose(s.shed_mw, s.dark.astype(float) @ mw if n else np.zeros(T))
    run = np.zeros(n, dtype=int)
    for t in range(T):
        capped = run >= cap if cap is not None else np.zeros(n, dtype=bool)
        flagged = s.cap_violation[t]
        # a flag only on a capped block that is dark
        assert not (flagged & ~(capped & s.dark[t])).any()
        # beyond the cap only when flagged
        assert not (capped & s.dark[t] & ~flagged).any()
        if flagged.any():
            # ... and only when the blocks below the cap could not meet the obligation, all of them dark
            assert mw[~capped].sum() < need[t] - TOL
            assert s.dark[t][~capped].all()
        if s.shortfall_mw[t] > 0:
            allowed = np.ones(n, dtype=bool) if s.on_cap_conflict == "extend" else ~capped
            assert s.dark[t][allowed].all()
            assert s.shed_mw[t] + s.shortfall_mw[t] == pytest.approx(need[t])
        else:
            assert s.shed_mw[t] >= need[t] - TOL  # the obligation is met
        if s.overshoot_mw[t] > 0:
            assert s.overshoot_mw[t] == pytest.approx(s.shed_mw[t] - need[t])
            assert s.overshoot_mw[t] < mw[s.dark[t]].max()  # never more than one block's worth
        if need[t] <= 0:
            assert not s.dark[t].any()
        run = np.where(s.dark[t], run + 1, 0)
    # fairness after every interval, not only at the end
    if n and T:
        c = np.cumsum(s.dark, axis=0)
        assert (c.max(axis=1) - c.min(axis=1)).max() <= 1
    assert s.fairness_spread <= 1
    np.testing.assert_array_equal(s.intervals_dark, s.dark.sum(axis=0))
    np.testing.assert_allclose(s.hours_dark, s.intervals_dark * s.interval_minutes / 60)


def _random_instance(rng):
    n = int(rng.integers(1, 13))
    T = int(rng.integers(1, 40))
    kind = rng.integers(3)
    if kind == 0:
        mw = np.full(n, 10.0)
    elif kind == 1:
        mw = rng.integers(1, 5, n) * 5.0
    else:
        mw = rng.uniform(0.5, 80.0, n)
    if rng.random() < 0.5:
        need = np.full(T, rng.uniform(0, 0.95) * mw.sum())
    else:
        need = rng.uniform(0, 1.0, T) * rng.uniform(0.2, 1.1) * mw.sum()
    need[rng.random(T) < 0.1] = 0.0
    minutes = [15, 20, 30, 45, 60][rng.integers(5)]
    hours = int(rng.integers(1, 6)) * minutes / 60
    return mw, need, minutes, hours


# ----------------------------------------------------------------------------------------------
# a hand-computed example and small cases


def test_four_equal_blocks_hand_computed():
    # 4 x 10 MW, 15 MW for 4 h in 1-h intervals, cap 2 h: two blocks (20 MW) per hour, taking turns
    s = rotate([10, 10, 10, 10], [15, 15, 15, 15], interval_minutes=60, max_hours_dark=2.0)
    np.testing.assert_array_equal(s.dark.astype(int), [[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(s.intervals_dark, [2, 2, 2, 2])
    np.testing.assert_allclose(s.hours_dark, [2, 2, 2, 2])
    np.testing.assert_allclose(s.shed_mw, 20.0)
    np.testing.assert_allclose(s.overshoot_mw, 5.0)
    np.testing.assert_allclose(s.shortfall_mw, 0.0)
    assert s.longest_outage_intervals.max() <= s.cap_intervals == 2
    np.testing.assert_allclose(s.longest_outage_hours, 1.0)
    assert s.feasible and s.fairness_spread == 0 and not s.oe417
    _runs_ok(s)


def test_zero_obligation_nothing_dark():
    s = rotate([5.0, 7.0, 9.0], np.zeros(6), interval_minutes=30)
    assert not s.dark.any()
    np.testing.assert_allclose(s.shed_mw, 0.0)
    np.testing.assert_array_equal(s.intervals_dark, 0)
    assert s.feasible


def test_obligation_above_total_reports_shortfall():
    s = rotate([10, 20, 30], [70, 50], max_hours_dark=4.0)
    assert s.dark[0].all()
    assert s.shortfall_mw[0] == pytest.approx(10.0)
    assert s.shortfall_mw[1] == 0.0 and s.shed_mw[1] >= 50
    assert not s.feasible
    _runs_ok(s)


def test_least_overshoot_fit():
    # 30 does not fit under 25; 20 + 5 is exact
    s = rotate([30, 20, 10, 5], [25])
    np.testing.assert_array_equal(s.dark[0], [False, True, False, True])
    assert s.overshoot_mw[0] == 0.0
    # 12 MW from 10, 10, 3: one 10 MW block, closed by the 3 MW block (13 MW), not by a second 10 MW one
    s = rotate([10, 10, 3], [12])
    assert s.shed_mw[0] == pytest.approx(13.0)


def test_fairness_before_overshoot():
    # the big block takes its turn once the small ones have had theirs; the overshoot is reported
    s = rotate([100, 10, 10, 10], [10, 10, 10, 10])
    np.testing.assert_array_equal(s.intervals_dark, [1, 1, 1, 1])
    np.testing.assert_allclose(s.overshoot_mw, [0, 0, 0, 90])
    _runs_ok(s)


@pytest.mark.parametrize(("minutes", "hours", "cap"), [(60, 2.0, 2), (15, 2.0, 8), (30, 1.25, 2), (45, 1.5, 2)])
def test_cap_in_intervals(minutes, hours, cap):
    s = rotate([10, 10, 10], [10] * 12, interval_minutes=minutes, max_hours_dark=hours)
    assert s.cap_intervals == cap
    assert s.longest_outage_intervals.max() <= cap
    assert s.longest_outage_hours.max() <= hours


def test_cap_restores_a_block_for_an_interval():
    # one block cannot be dark for 3 h with a 1 h cap; the second block takes over
    s = rotate([10, 10], [5, 5, 5], max_hours_dark=1.0)
    assert s.longest_outage_intervals.max() == 1
    assert s.feasible
    _runs_ok(s)


def test_cap_conflict_extend_flags_and_meets_obligation():
    s = rotate([10, 10], [15, 15, 15], max_hours_dark=1.0)  # default: extend
    assert s.dark.all()
    np.testing.assert_allclose(s.shortfall_mw, 0.0)
    np.testing.assert_array_equal(s.cap_violation, [[False, False], [True, True], [True, True]])
    assert not s.feasible
    _runs_ok(s)


def test_cap_conflict_shortfall_keeps_cap():
    s = rotate([10, 10], [15, 15, 15], max_hours_dark=1.0, on_cap_conflict="shortfall")
    np.testing.assert_array_equal(s.dark.astype(int), [[1, 1], [0, 0], [1, 1]])
    np.testing.assert_allclose(s.shortfall_mw, [0, 15, 0])
    assert not s.cap_violation.any()
    assert s.longest_outage_intervals.max() == 1
    _runs_ok(s)


def test_no_cap():
    s = rotate([10], [5] * 10, max_hours_dark=math.inf)
    assert s.cap_intervals is None
    assert s.dark.all() and s.feasible


def test_block_ids_and_stats():
    s = rotate([10, 20], [15, 15], block_ids=["feeder a", "feeder b"], interval_minutes=30)
    bs = s.block_stats()
    assert list(bs["block"]) == ["feeder a", "feeder b"]
    assert list(bs.columns) == ["block", "mw", "intervals_dark", "hours_dark", "longest_outage_hours", "cap_violations"]
    np.testing.assert_allclose(bs["hours_dark"], bs["intervals_dark"] * 0.5)


def test_no_intervals_and_no_blocks():
    s = rotate([10, 20], [])
    assert s.dark.shape == (0, 2) and s.feasible
    s = rotate([], [0, 5])
    assert s.dark.shape == (2, 0)
    np.testing.assert_allclose(s.shortfall_mw, [0, 5])


# ----------------------------------------------------------------------------------------------
# properties on random instances


@pytest.mark.parametrize("policy", ["extend", "shortfall"])
def test_random_instances(policy):
    rng = np.random.default_rng(20210215)
    feasible = conflicts = 0
    for _ in range(300):
        mw, need, minutes, hours = _random_instance(rng)
        s = rotate(mw, need, interval_minutes=minutes, max_hours_dark=hours, on_cap_conflict=policy)
        _runs_ok(s)
        if policy == "shortfall":
            assert not s.cap_violation.any()
            assert s.longest_outage_intervals.max() <= s.cap_intervals
        feasible += s.feasible
        conflicts += not s.feasible
    assert feasible > 100 and conflicts > 20  # both kinds of instance were exercised


def test_random_instances_without_cap_are_fair_and_meet_obligation():
    rng = np.random.default_rng(7)
    for _ in range(300):
        mw, need, minutes, _ = _random_instance(rng)
        need = np.minimum(need, mw.sum())
        s = rotate(mw, need, interval_minutes=minutes, max_hours_dark=math.inf)
        assert s.feasible
        assert (s.shed_mw >= need - TOL).all()
        _runs_ok(s)


def test_random_equal_blocks_meet_obligation_with_fewest_blocks():
    # equal blocks: exactly ceil(obligation / size) dark, and counts within one
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(2, 10))
        need = rng.integers(0, n, 24) * 10.0 + rng.choice([0.0, 4.0], 24)
        s = rotate(np.full(n, 10.0), need, max_hours_dark=math.inf)
        np.testing.assert_array_equal(s.dark.sum(axis=1), np.ceil(need / 10.0))
        assert s.fairness_spread <= 1


# ----------------------------------------------------------------------------------------------
# many zones, OE-417


def _zones_input():
    blocks = pd.DataFrame(
        {
            "zone": ["north"] * 3 + ["south"] * 2 + ["idle"],
            "block": [101, 102, 103, 201, 202, 301],
            "mw": [60.0, 50.0, 40.0, 30.0, 30.0, 5.0],
        }
    )
    index = pd.date_range("2021-02-15 01:00", periods=3, freq="h")
    obligations = pd.DataFrame({"north": [100.0, 80.0, 0.0], "south": [40.0, 20.0, 50.0]}, index=index)
    return blocks, obligations


def test_rotate_zones_tables():
    blocks, obligations = _zones_input()
    sched, bstats, zstats = rotate_zones(blocks, obligations, interval_minutes=60, max_hours_dark=3.0)
    assert list(sched.columns) == ["interval", "block", "zone", "dark"]
    assert len(sched) == 3 * len(blocks)
    assert sched["interval"].iloc[0] == obligations.index[0]
    assert list(bstats.columns)[:6] == ["zone", "block", "mw", "intervals_dark", "hours_dark", "longest_outage_hours"]
    assert list(zstats.columns)[:6] == ["zone", "obligation_mw_max", "shed_mw_max", "blocks", "hours_dark_max", "oe417"]
    assert list(zstats["zone"]) == ["north", "south", "idle"]
    z = zstats.set_index("zone")
    assert z.loc["north", "obligation_mw_max"] == 100.0 and z.loc["north", "blocks"] == 3
    assert z.loc["idle", "shed_mw_max"] == 0.0  # no obligation given: nothing dark
    # the schedule table agrees with the per-zone rotation
    for zone in ("north", "south"):
        rows = blocks[blocks["zone"] == zone]
        s = rotate(rows["mw"].to_numpy(), obligations[zone].to_numpy(), max_hours_dark=3.0)
        dark = sched[sched["zone"] == zone]["dark"].to_numpy().reshape(3, len(rows))
        np.testing.assert_array_equal(dark, s.dark)
        shed = sched[sched["zone"] == zone].merge(blocks, on=["zone", "block"]).query("dark").groupby("interval")["mw"]
        assert (shed.sum().to_numpy() >= obligations[zone][obligations[zone] > 0].to_numpy() - TOL).all()
        b = bstats[bstats["zone"] == zone]
        np.testing.assert_array_equal(b["intervals_dark"], s.intervals_dark)
        assert z.loc[zone, "hours_dark_max"] == pytest.approx(s.hours_dark.max())


def test_rotate_zones_dict_obligations():
    blocks, _ = _zones_input()
    sched, _, zstats = rotate_zones(blocks, {"south": np.array([10.0, 10.0])})
    assert sorted(sched["interval"].unique()) == [0, 1]
    assert zstats.set_index("zone").loc["north", "shed_mw_max"] == 0.0


def test_oe417_flag():
    blocks, obligations = _zones_input()
    _, _, zstats = rotate_zones(blocks, obligations, max_hours_dark=3.0)
    flags = zstats.set_index("zone")["oe417"]
    assert bool(flags["north"]) and not bool(flags["south"]) and not bool(flags["idle"])
    # exactly at the threshold counts; just under does not
    assert rotate([50.0, 50.0], [OE417_THRESHOLD_MW]).oe417
    assert not rotate([49.0, 50.0], [99.0]).oe417
    # judged on what is shed: a shortfall that keeps the shed under 100 MW is not flagged
    s = rotate([40.0, 40.0], [120.0])
    assert s.shortfall_mw[0] == pytest.approx(40.0) and not s.oe417


# ----------------------------------------------------------------------------------------------
# input errors: one clear line each


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block_mw": [10, -1]}, r"block_mw\[1\] is negative"),
        ({"block_mw": [10, float("nan")]}, r"block_mw\[1\] is NaN"),
        ({"block_mw": [10, 0]}, r"block_mw\[1\] is 0 MW"),
        ({"block_mw": [10, float("inf")]}, r"block_mw\[1\] is infinite"),
        ({"block_mw": ["ten"]}, r"block_mw must be numbers"),
        ({"block_mw": [[1, 2]]}, r"one-dimensional"),
        ({"obligation_mw": [5, -5]}, r"obligation_mw\[1\] is negative"),
        ({"obligation_mw": [float("nan")]}, r"obligation_mw\[0\] is NaN"),
        ({"interval_minutes": 5}, r"interval_minutes must be between 10 and 60 \(got 5\)"),
        ({"interval_minutes": 90}, r"between 10 and 60"),
        ({"interval_minutes": float("nan")}, r"between 10 and 60"),
        ({"interval_minutes": "60"}, r"interval_minutes must be a number"),
        ({"max_hours_dark": 0.5}, r"max_hours_dark \(0.5 h\) is shorter than one interval \(60 min\)"),
        ({"max_hours_dark": 0.0}, r"shorter than one interval"),
        ({"max_hours_dark": -1.0}, r"shorter than one interval"),
        ({"max_hours_dark": float("nan")}, r"max_hours_dark is NaN"),
        ({"on_cap_conflict": "ignore"}, r"on_cap_conflict must be"),
        ({"block_ids": ["a"]}, r"block_ids has 1 labels for 2 blocks"),
        ({"block_ids": ["a", "a"]}, r"block 'a' appears more than once"),
    ],
)
def test_rotate_input_errors(kwargs, match):
    args = {"block_mw": [10.0, 20.0], "obligation_mw": [15.0]} | kwargs
    with pytest.raises(ScenarioError, match=match) as e:
        rotate(args.pop("block_mw"), args.pop("obligation_mw"), **args)
    assert "\n" not in str(e.value)


def test_max_hours_dark_equal_to_one_interval_is_fine():
    assert rotate([10.0], [5.0], interval_minutes=15, max_hours_dark=0.25).cap_intervals == 1


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda b, o: (b.drop(columns="mw"), o), r"missing the column 'mw'"),
        (lambda b, o: (b.assign(mw=[60, -50, 40, 30, 30, 5]), o), r"zone 'north' block 102: mw is negative"),
        (lambda b, o: (b.assign(mw=[60, 50, np.nan, 30, 30, 5]), o), r"zone 'north' block 103: mw is NaN"),
        (lambda b, o: (b.assign(mw=[60, 50, 40, "x", 30, 5]), o), r"zone 'south' block 201: mw is not a number"),
        (lambda b, o: (b.assign(block=[101, 101, 103, 201, 202, 301]), o), r"lists block 101 more than once"),
        (lambda b, o: (b, o.assign(west=1.0)), r"zone 'west' has no blocks"),
        (lambda b, o: (b, o.assign(south=[1.0, np.nan, 2.0])), r"obligation of zone 'south'\[1\] is NaN"),
        (lambda b, o: (b, o.assign(north=[1.0, -2.0, 2.0])), r"obligation of zone 'north'\[1\] is negative"),
        (lambda b, o: (b, {"north": [1.0, 2.0], "south": [1.0]}), r"'north' has 2 intervals but zone 'south' has 1"),
        (lambda b, o: (b, [1.0, 2.0]), r"obligations must be a DataFrame"),
        (lambda b, o: (b.to_dict(), o), r"blocks must be a DataFrame"),
    ],
)
def test_rotate_zones_input_errors(mutate, match):
    blocks, obligations = mutate(*_zones_input())
    with pytest.raises(ScenarioError, match=match) as e:
        rotate_zones(blocks, obligations)
    assert "\n" not in str(e.value)


def test_rotate_zones_passes_options_through():
    blocks, obligations = _zones_input()
    with pytest.raises(ScenarioError, match="between 10 and 60"):
        rotate_zones(blocks, obligations, interval_minutes=5)
    _, _, zs = rotate_zones(blocks, obligations, max_hours_dark=1.0, on_cap_conflict="shortfall")
    assert (zs["cap_violations"] == 0).all()
    assert (zs["longest_outage_hours_max"] <= 1.0).all()


# ----------------------------------------------------------------------------------------------
# cold-load pickup


def test_cold_load_pickup_hand_computed():
    """4 x 10 MW, 15 MW every hour, cap 1 h, pickup 50 %: hour 0 darkens two blocks (20 MW, no pickup);
    hour 1 must restore both (cap) and they come back at 15 MW each, so the relief needed is
    15 + 2 x 5 = 25 MW: the other two blocks (20 MW) cannot give it -> shortfall 5 MW (cap kept)."""
    s = rotate([10, 10, 10, 10], [15, 15], interval_minutes=60, max_hours_dark=1.0, on_cap_conflict="shortfall",
               cold_load_pickup_percent=50)
    np.testing.assert_array_equal(s.dark, [[True, True, False, False], [False, False, True, True]])
    np.testing.assert_allclose(s.pickup_mw, [0.0, 10.0])
    np.testing.assert_allclose(s.relief_mw, [20.0, 10.0])
    np.testing.assert_allclose(s.shortfall_mw, [0.0, 5.0])
    # with a 2 h cap: fairness darkens blocks 2 and 3 first (20 MW), but restoring 0 and 1 costs 10 MW of
    # pickup (relief 10 < 15); one of them stays dark (it counts 1.5 x: no pickup from it): relief 30 - 5 = 25
    s = rotate([10, 10, 10, 10], [15, 15], interval_minutes=60, max_hours_dark=2.0, cold_load_pickup_percent=50)
    np.testing.assert_array_equal(s.dark[1], [True, False, True, True])
    np.testing.assert_allclose(s.relief_mw, [20.0, 25.0])
    assert s.feasible


@pytest.mark.parametrize("policy", ["extend", "shortfall"])
def test_random_instances_with_cold_load_pickup(policy):
    """Relief = dark MW - pickup of the restored blocks; it covers the obligation unless a shortfall is
    reported (then every allowed block is dark); the cap and fairness hold as without pickup."""
    rng = np.random.default_rng(7)
    for _ in range(150):
        mw, need, minutes, hours = _random_instance(rng)
        c = float(rng.choice([0.0, 20.0, 50.0, 100.0]))
        s = rotate(mw, need, interval_minutes=minutes, max_hours_dark=hours, on_cap_conflict=policy,
                   cold_load_pickup_percent=c)
        prev = np.zeros(len(mw), bool)
        run = np.zeros(len(mw), int)
        for t in range(len(need)):
            pickup = c / 100 * mw[prev & ~s.dark[t]].sum()
            assert s.pickup_mw[t] == pytest.approx(pickup)
            relief = s.dark[t] @ mw - pickup
            assert s.relief_mw[t] == pytest.approx(relief)
            if need[t] <= 0:
                assert not s.dark[t].any()
            elif s.shortfall_mw[t] > 0:
                capped = run >= s.cap_intervals if s.cap_intervals is not None else np.zeros(len(mw), bool)
                allowed = np.ones(len(mw), bool) if policy == "extend" else ~capped
                assert s.dark[t][allowed].all()
                assert relief + s.shortfall_mw[t] == pytest.approx(need[t])
            else:
                assert relief >= need[t] - TOL
            if policy == "shortfall" and s.cap_intervals is not None:
                assert (np.where(s.dark[t], run + 1, 0) <= s.cap_intervals).all()
            run = np.where(s.dark[t], run + 1, 0)
            prev = s.dark[t]
        c_dark = np.cumsum(s.dark, axis=0)
        assert (c_dark.max(axis=1) - c_dark.min(axis=1)).max(initial=0) <= 1


def test_cold_load_pickup_input_error():
    with pytest.raises(ScenarioError, match="cold_load_pickup_percent must be a number from 0 to 200"):
        rotate([10.0], [5.0], cold_load_pickup_percent=-1)

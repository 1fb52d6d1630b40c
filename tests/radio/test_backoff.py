"""The radio's one retry policy: its bounds hold for any parameters and any random draws."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radio.backoff import JITTER, Backoff

firsts = st.floats(1e-3, 1e3)
factors = st.floats(1.0, 10.0)
jitters = st.floats(0.0, 0.99)


@st.composite
def policies(draw: st.DrawFn) -> Backoff:
    first = draw(firsts)
    cap = first * draw(st.floats(1.0, 1e4))
    return Backoff(
        first,
        cap,
        factor=draw(factors),
        jitter=draw(jitters),
        rng=draw(st.randoms(use_true_random=False)),
    )


@given(policies(), st.integers(1, 200))
def test_every_delay_lies_within_its_step_and_the_overall_bounds(policy: Backoff, n: int) -> None:
    for i in range(n):
        step = min(policy.cap, policy.first * policy.factor**i)
        delay = policy.next()
        assert policy.shortest <= delay <= policy.longest == policy.cap  # exact, no tolerance
        # within this attempt's step (the tolerance only covers `step` being recomputed here)
        assert step * (1 - policy.jitter) * (1 - 1e-9) <= delay <= step * (1 + 1e-9)
    assert policy.attempts == n


@given(policies(), st.integers(0, 60), st.integers(1, 30))
def test_reset_starts_over_at_first(policy: Backoff, before: int, after: int) -> None:
    for _ in range(before):
        policy.next()
    policy.reset()
    assert policy.attempts == 0
    assert policy.first * (1 - policy.jitter) <= policy.next() <= policy.first


@given(firsts, st.floats(1.0, 1e4), factors, jitters, st.integers(0, 2**32))
def test_the_same_seed_gives_the_same_delays(
    first: float, ratio: float, factor: float, jitter: float, seed: int
) -> None:
    def draws() -> list[float]:
        policy = Backoff(
            first, first * ratio, factor=factor, jitter=jitter, rng=random.Random(seed)
        )
        return [policy.next() for _ in range(20)]

    assert draws() == draws()


def test_without_jitter_the_steps_are_exact() -> None:
    policy = Backoff(1.0, 60.0, jitter=0)
    assert [policy.next() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    policy.reset()
    assert policy.next() == 1.0


def test_jitter_spreads_the_waits_even_at_the_cap() -> None:
    # Pads on one USB hub fail together: their retries must not stay in step, least of all
    # at the cap, where a clamp would put half of them on exactly the same second.
    pads = [Backoff(0.5, 30.0, rng=random.Random(seed)) for seed in range(8)]
    for _ in range(12):  # well past the cap
        delays = [pad.next() for pad in pads]
    assert all(30.0 * (1 - JITTER) <= d <= 30.0 for d in delays)
    assert len(set(delays)) == len(pads)


def test_a_very_long_outage_does_not_overflow() -> None:
    policy = Backoff(0.5, 30.0, factor=10.0)
    for _ in range(10_000):
        delay = policy.next()
    assert 22.5 <= delay <= 30.0


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((0.0, 1.0), {}),
        ((-1.0, 1.0), {}),
        ((2.0, 1.0), {}),
        ((1.0, math.inf), {}),
        ((math.nan, 1.0), {}),
        ((1.0, 2.0), {"factor": 0.5}),
        ((1.0, 2.0), {"factor": math.nan}),
        ((1.0, 2.0), {"jitter": 1.0}),
        ((1.0, 2.0), {"jitter": -0.1}),
        ((1.0, 2.0), {"jitter": math.nan}),
    ],
)
def test_nonsense_parameters_are_refused(
    args: tuple[float, float], kwargs: dict[str, float]
) -> None:
    with pytest.raises(ValueError):
        Backoff(*args, **kwargs)

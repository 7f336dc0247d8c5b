"""Session(best_of=k): k candidates per frame in one pass, the likeliest kept — checked against a fork that
draws the same k candidates as a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldsim import ConfigError

FIRST = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_best_of_keeps_the_likeliest_of_the_same_candidates_a_batch_draws(tiny, guidance):
    with tiny.session(seed=3, guidance=guidance) as plain, tiny.session(seed=3, guidance=guidance, best_of=3) as best:
        for s in (plain, best):
            s.reset(frames=FIRST, actions=["stay"])
        batch = plain.fork(batch_size=3)  # continues the generator: draws the same noise best_of=3 draws
        candidates = batch.step(["move up"] * 3)
        kept = best.step("move up")
        j = int(np.argmax(candidates.log_prob))
        assert len(set(np.round(candidates.log_prob, 3))) == 3  # three different candidates to choose from
        assert kept.log_prob == pytest.approx(float(candidates.log_prob[j]), abs=1e-4)
        assert np.abs(kept.frame.astype(int) - candidates.frame[j].astype(int)).max() <= 1
        n, rows = best.state.cache.length, best.state.cache.k[0].shape[0]  # 1, or 2 with guidance ([cond; null])
        assert batch.state.cache.length == n
        for kb, kc in zip(best.state.cache.k, batch.state.cache.k, strict=True):
            for r in range(rows):  # the kept world's cache row (and its unconditional twin) is the candidate's
                torch.testing.assert_close(kb[r, :, :n], kc[r * 3 + j, :, :n], atol=1e-4, rtol=0)
        assert best.step("move left").frame.shape == (16, 16, 3)  # and the session goes on from there
        assert len(best.history) == 4


def test_best_of_batches_and_takes_the_same_frame_shape(tiny):
    with tiny.session(seed=0, batch_size=2, best_of=2) as s:
        s.reset(frames=np.stack([FIRST, FIRST[::-1]]), actions=[["stay", "stay"]])
        out = s.step(["move up", "move down"])
        assert out.frame.shape == (2, 16, 16, 3) and np.shape(out.log_prob) == (2,)
        assert s.state.cache.k[0].shape[0] == 2


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_best_of_must_be_a_positive_int(tiny, bad):
    with pytest.raises(ConfigError, match=f"best_of={bad!r}: (it must be ≥ 1|expected an int)"):
        tiny.session(best_of=bad)

"""pipelines/training.py: the schedule and resumable state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.training import cosine_lr, load_state, optimizer_step, save_state


def test_cosine_schedule_hand_worked():
    assert cosine_lr(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert cosine_lr(9, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert cosine_lr(10, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert cosine_lr(55, 100, 1.0, warmup=10) == pytest.approx(0.5)
    assert cosine_lr(100, 100, 1.0, warmup=10) == pytest.approx(0.0)


def test_state_round_trip_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    optimizer_step(model, optimizer, model(torch.randn(3, 4)).pow(2).sum(), lr=0.1)
    save_state(tmp_path / "state.pt", model, optimizer, step=1, log=[{"step": 1}])
    expected = torch.rand(2)
    fresh = torch.nn.Linear(4, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    step, log = load_state(tmp_path / "state.pt", fresh, fresh_opt)
    assert (step, log) == (1, [{"step": 1}])
    assert torch.equal(fresh.weight, model.weight)
    assert torch.equal(torch.rand(2), expected)  # the RNG continues where it was saved
    assert load_state(tmp_path / "missing.pt", fresh, fresh_opt) == (0, [])


def test_accumulating_identical_micro_batches_equals_one_step():
    import torch

    from pipelines.training import accumulated_step

    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        return model, torch.optim.AdamW(model.parameters(), lr=0.1)

    x, y = torch.randn(8, 4), torch.randn(8, 2)
    one, opt_one = make()
    two, opt_two = make()
    loss_one = accumulated_step(one, opt_one, 0.1, [lambda: ((one(x) - y) ** 2).mean()])
    loss_two = accumulated_step(two, opt_two, 0.1, [lambda: ((two(x) - y) ** 2).mean()] * 2)
    assert loss_one == loss_two
    for a, b in zip(one.parameters(), two.parameters(), strict=True):
        assert torch.allclose(a, b)


def test_step_budget_fits_the_schedule_to_the_clock():
    from pipelines.training import StepBudget

    assert StepBudget(500, None, warmup=50).update(10, now=123.0) == 500  # no budget: the steps

    def run(budget_s, step_s, cap=10_000):
        budget, clock, step, totals = StepBudget(cap, budget_s, warmup=50), 0.0, 0, []
        while step < budget.total:
            clock += step_s(step)
            step += 1
            totals.append(budget.update(step, clock))
        return step, clock, totals

    # 0.1 s a step, 10 s: about 100 steps after the first (timing starts there), never more
    steps, clock, totals = run(10.0, lambda s: 0.1)
    assert 95 <= steps <= 102 and clock <= 10.0 + 0.1 + 1e-9
    assert totals[:30] == [10_000] * 30  # the total is fixed only once calibrated (inside the warmup)
    # slow first steps (allocation) do not lock a pessimistic total in: the estimate recovers
    steps, _, _ = run(10.0, lambda s: 1.0 if s < 5 else 0.05)
    assert steps > 100
    # the cap holds however fast the steps are
    assert run(1e6, lambda s: 0.01, cap=300)[0] == 300


class _FakeShards:
    """Enough of TokenShards for ExampleSampler: single utterances of random length, two speakers."""

    meta = {"codec_frame_rate": 50, "levels": 2}
    ratio = 2

    def __init__(self, count=40, seed=0):
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(count):
            n = int(rng.integers(20, 200))
            self.items.append(
                {
                    "kind": "single",
                    "speakers": [i % 2],
                    "codes": rng.integers(0, 16, (2, 2 * n)),
                    "semantic_tokens": rng.integers(0, 8, n),
                    "turns": [],
                }
            )
        self.singles_by_speaker = {s: [i for i in range(count) if i % 2 == s] for s in (0, 1)}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_validation_batches_do_not_depend_on_the_training_batch():
    from pipelines.batching import valid_batches
    from pipelines.config import DataConfig

    def first_batches(frames_per_batch):
        config = DataConfig()
        config.soundstorm.frames_per_batch = frames_per_batch
        config.soundstorm.valid_frames_per_batch = 1000
        batches = valid_batches(_FakeShards(), config, levels=2)
        return [next(batches) for _ in range(3)]

    small, large = first_batches(500), first_batches(12000)
    for a, b in zip(small, large, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert a["codes"].shape[0] * a["codes"].shape[2] <= 1000 or a["codes"].shape[0] == 1

"""Per-chip output trim (analog/hardware/trim.py): the fitted offsets against the optimality
condition of the cross-entropy computed here, a dead class restored, a trim that would not help
left out, and the trimmed scenario on a programmed chip against a hand-rolled read (the
split arithmetic is in test_chip_population.py, beside the untrimmed one); the untrimmed and
trimmed grids from one read of the test set against the two read separately."""
import numpy as np
import pytest

from analog.hardware import fit_output_offsets


def _scores(n=3000, k=4, seed=0, noise=0.08):
    """Outputs of a good classifier: the true class 0.2 V above the others, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    out = -0.1 + 0.3 * np.eye(k)[y] + noise * rng.standard_normal((n, k))
    return out, y


def test_offsets_zero_the_mean_softmax_residual():
    out, y = _scores()
    out[:, 1] -= 0.25                                    # class 1's column reads 0.25 V low
    b = fit_output_offsets(out, y, steps=4000)
    z = (out + b) / 0.1
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    residual = (p - np.eye(4)[y]).mean(0)                # the cross-entropy's gradient in b, times T
    assert np.abs(residual).max() < 1e-4
    assert b[1] - np.delete(b, 1).mean() == pytest.approx(0.25, abs=0.03)


def test_a_dead_class_is_restored_and_a_healthy_chip_left_alone():
    out, y = _scores(seed=1)
    healthy = float((out.argmax(1) == y).mean())
    shifted = out.copy()
    shifted[:, 2] -= 0.4                                 # class 2 never wins
    assert float((shifted.argmax(1) == y).mean()) < healthy - 0.2
    cal, test = slice(0, 1000), slice(1000, None)
    b = fit_output_offsets(shifted[cal], y[cal])
    assert float(((shifted[test] + b).argmax(1) == y[test]).mean()) > float((out[test].argmax(1) == y[test]).mean()) - 0.01
    # already balanced: the fitted trim cannot raise the calibration accuracy, so it is zeros or helps
    b0 = fit_output_offsets(out[cal], y[cal])
    acc = lambda s: float((s.argmax(1) == y[cal]).mean())
    assert not b0.any() or acc(out[cal] + b0) > acc(out[cal])


def test_non_converged_rows_are_left_out_and_bad_input_named():
    out, y = _scores(n=500, seed=2)
    out[:10] = np.nan
    b = fit_output_offsets(out, y)
    assert np.all(np.isfinite(b))
    with pytest.raises(ValueError, match="temperature"):
        fit_output_offsets(out, y, temperature=0.0)


def test_trimmed_grid_matches_a_hand_rolled_read_on_a_programmed_chip():
    from analog.hardware import program, trimmed_accuracy_grid
    from tests.analog_circuits import four_input_block, steady_chip_spec
    model, x, y = four_input_block(300, data_seed=4)
    y = np.argmax(x[:, :3] + 0.3 * x[:, 3:], axis=1)      # labels a linear readout could give
    chip = program(model, steady_chip_spec(), seed=3)   # every read the same circuit
    try:
        grid = trimmed_accuracy_grid([chip], x[:100], y[:100], x[100:], y[100:], [0.0])
        b = fit_output_offsets(chip.circuit.outputs(chip.solve(x[:100]).v), y[:100])
        out = chip.circuit.outputs(chip.solve(x[100:]).v)
        assert grid[0, 0] == float(((out + b).argmax(1) == y[100:]).mean())
        assert grid[0, 0] >= chip.accuracy(x[100:], y[100:]) - 0.05
    finally:
        chip.close()
        model.close()



def _count_rows(chips) -> list:
    """Each chip's solve wrapped to record how many inputs it reads (the reads unchanged)."""
    rows = []
    for chip in chips:
        def counted(x, *args, _solve=chip.solve, **kw):
            rows.append(len(x))
            return _solve(x, *args, **kw)
        chip.solve = counted
    return rows


@pytest.mark.parametrize("preset", ["steady", "pcm"])
def test_untrimmed_and_trimmed_grids_read_the_test_set_once(preset):
    """pipeline.hardware.chip_metrics.accuracy_grids against the two grids read separately
    (accuracy_grid, then trimmed_accuracy_grid reading the test set again), on chips
    programmed alike: the untrimmed grid is the same reads in the same order; with every read
    the same circuit (steady) the trimmed grid is equal too, with read noise (pcm) it is the
    offsets fitted on the calibration read applied to the untrimmed grid's own read, rolled here."""
    from analog.hardware import program, resolve_hardware, trimmed_accuracy_grid
    from pipeline.hardware.chip_metrics import accuracy_grid, accuracy_grids
    from tests.analog_circuits import four_input_block, steady_chip_spec
    model, x, y = four_input_block(300, data_seed=4)
    y = np.argmax(x[:, :3] + 0.3 * x[:, 3:], axis=1)
    spec = steady_chip_spec() if preset == "steady" else resolve_hardware("pcm")
    times, cal, test = [0.0, 3600.0], slice(0, 60), slice(100, None)
    sets = [[program(model, spec, seed=s) for s in (3, 5)] for _ in range(3)]
    try:
        two, one, hand = sets
        rows_two, rows_one = _count_rows(two), _count_rows(one)
        acc_two = accuracy_grid(two, x[test], y[test], times)
        trim_two = trimmed_accuracy_grid(two, x[cal], y[cal], x[test], y[test], times)
        acc, trim = accuracy_grids(one, x[test], y[test], times, (x[cal], y[cal]))
        assert sum(rows_two) == len(times) * 2 * (2 * 200 + 60)
        assert sum(rows_one) == len(times) * 2 * (200 + 60)
        assert np.array_equal(acc, acc_two)
        # by hand: every test read first (as the untrimmed grid), then each time's calibration read
        outs = [[chip.circuit.outputs(chip.solve(x[test], t).v) for chip in hand] for t in times]
        expect = np.zeros_like(trim)
        for i, t in enumerate(times):
            for j, chip in enumerate(hand):
                assert float((outs[i][j].argmax(1) == y[test]).mean()) == acc[i, j]
                b = fit_output_offsets(chip.circuit.outputs(chip.solve(x[cal], t).v), y[cal])
                expect[i, j] = float(((outs[i][j] + b).argmax(1) == y[test]).mean())
        assert np.array_equal(trim, expect)
        if preset == "steady":
            assert np.array_equal(trim, trim_two)
        assert accuracy_grids(one, x[test], y[test], times)[1] is None
    finally:
        for chip in (c for s in sets for c in s):
            chip.close()
    model.close()

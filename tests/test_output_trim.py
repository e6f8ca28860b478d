"""Per-chip output trim (analog/hardware/trim.py): the fitted offsets against the optimality
condition of the cross-entropy computed here, a dead class restored, a trim that would not help
left out, and the trimmed scenario on a programmed chip against a hand-rolled read (the
split arithmetic is in test_chip_population.py, beside the untrimmed one)."""
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


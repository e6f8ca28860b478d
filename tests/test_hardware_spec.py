"""Hardware specs: presets resolve, overrides apply field by field, bad input names its key."""
import numpy as np
import pytest

from analog.hardware import PRESETS, HardwareSpec, program, resolve_hardware
from tests.analog_circuits import block


def test_presets_resolve_with_their_figures():
    assert set(PRESETS) >= {"ideal", "pcm", "rram", "ebana-4level"}
    pcm = resolve_hardware("pcm").device
    assert (pcm.g_max, pcm.prog_noise, pcm.read_noise, pcm.drift, pcm.t_c, pcm.t_read) == \
        (25e-6, "pcm", "pcm", "pcm", 20.0, 250e-9)
    rram = resolve_hardware("rram").device
    assert 10 <= rram.g_max / rram.g_min <= 100 and rram.prog_noise == "constant"
    assert abs(rram.prog_sigma / rram.g_max - 0.05) < 1e-12
    assert resolve_hardware("ebana-4level").device.levels == 4
    ideal = resolve_hardware()
    assert ideal.device.prog_noise == ideal.device.read_noise == ideal.device.drift == "none"
    assert not ideal.variation.any


def test_overrides_nested_and_dotted_give_the_same_spec():
    a = resolve_hardware("pcm", {"device": {"g_max": 10e-6, "levels": 8}, "variation": {"gain_sigma": 0.01}})
    b = resolve_hardware("pcm", {"device.g_max": 10e-6, "hardware.device.levels": 8, "variation.gain_sigma": 0.01})
    assert a == b
    assert a.device.g_max == 10e-6 and a.device.levels == 8 and a.device.prog_noise == "pcm"
    assert HardwareSpec.from_dict(a.to_dict()) == a


@pytest.mark.parametrize("overrides, key", [
    ({"device": {"g_min": 3e-5}}, "hardware.device.g_min=3e-05"),
    ({"device": {"g_min": 25e-6}}, "hardware.device.g_min="),
    ({"device": {"g_min": 0.0}}, "hardware.device.g_min=0.0"),
    ({"device": {"levels": 1}}, "hardware.device.levels=1"),
    ({"device": {"levels": 2.5}}, "hardware.device.levels=2.5"),
    ({"device": {"prog_sigma": -0.1}}, "hardware.device.prog_sigma=-0.1"),
    ({"device": {"read_sigma": -1}}, "hardware.device.read_sigma=-1"),
    ({"device": {"nu_std": -0.01}}, "hardware.device.nu_std=-0.01"),
    ({"variation": {"vto_sigma": -0.01}}, "hardware.variation.vto_sigma=-0.01"),
    ({"variation": {"is_sigma": float("nan")}}, "hardware.variation.is_sigma=nan"),
    ({"device": {"stuck_g_min": 1.5}}, "hardware.device.stuck_g_min=1.5"),
    ({"device": {"stuck_g_max": -0.1}}, "hardware.device.stuck_g_max=-0.1"),
    ({"device": {"stuck_g_min": 0.6, "stuck_g_max": 0.5}}, "hardware.device.stuck_g_max=0.5"),
    ({"device": {"prog_noise": "gaussian"}}, "hardware.device.prog_noise='gaussian'"),
    ({"device": {"t_read": 0.0}}, "hardware.device.t_read=0.0"),
    ({"device": {"dw_min": 0.0}}, "hardware.device.dw_min=0.0"),
    ({"device": {"up_down": 1.0}}, "hardware.device.up_down=1.0"),
    ({"device": {"colour": 1}}, "hardware.device.colour: unknown key"),
    ({"devices": {}}, "hardware.devices: unknown key"),
    ({"drift_compensation": "yes"}, "hardware.drift_compensation='yes'"),
])
def test_bad_input_names_the_key(overrides, key):
    with pytest.raises(ValueError) as exc:
        resolve_hardware("pcm", overrides)
    assert str(exc.value).startswith(key), str(exc.value)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"^hardware.preset='pmc'.*ebana-4level, ideal, neurram, pcm, rram"):
        resolve_hardware("pmc")


def test_read_time_before_programming_is_refused():
    chip = program(block(hidden=(3,)), resolve_hardware("pcm"), seed=0)
    for t in (-1.0, float("nan"), "1h"):
        with pytest.raises(ValueError, match=r"^hardware.t="):
            chip.conductances_at(t)
    with pytest.raises(ValueError, match=r"^hardware.t=-5"):
        chip.predict(np.zeros((1, 3)), t=-5)
    with pytest.raises(ValueError, match="seed"):
        program(block(hidden=(3,)), resolve_hardware("pcm"), seed=-1)


def test_from_dict_names_unknown_keys_and_program_takes_a_preset_name():
    d = resolve_hardware("pcm").to_dict()
    d["device"]["colour"] = 1
    with pytest.raises(ValueError, match=r"^hardware.device.colour: unknown key"):
        HardwareSpec.from_dict(d)
    d = resolve_hardware("pcm").to_dict()
    d["device"]["levels"] = 1
    with pytest.raises(ValueError, match=r"^hardware.device.levels=1"):
        HardwareSpec.from_dict(d)
    m = block(hidden=(3,))
    a, b = program(m, "pcm", seed=2), program(m, resolve_hardware("pcm"), seed=2)
    np.testing.assert_array_equal(a.G_prog[0], b.G_prog[0])
    with pytest.raises(ValueError, match="hardware.preset='nope'"):
        program(m, "nope")

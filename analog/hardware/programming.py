"""What happens once, when a trained block is written onto a chip: each device's programmed
conductance, its drift exponent and stuck state, and the realised parameters of every diode
and amplifier. Pure numpy on arrays; `chip.program` wires it to a model.

Device range. A crossbar layer is trained in its own range [g_min_L, g_max_L]; the device
has [g_min, g_max]. The trained conductances are scaled by k = g_max / g_max_L into the
device range (the programming statistics are calibrated in device units), and the chip is
simulated with G_device / k. That is exact physics, not an approximation: dividing every
conductance by k is the same circuit as multiplying every other current (diodes, gmin
shunts, nudging sources) by k, and a uniform current scale leaves every node voltage
unchanged. So the ideal device reproduces the trained block, and the device's on/off ratio,
levels, noise and faults act on the trained values in proportion.
"""
from __future__ import annotations

import numpy as np

from . import statistics as st
from .spec import DeviceSpec, VariationSpec

STUCK_NONE, STUCK_LOW, STUCK_HIGH = 0, -1, 1


def streams(seed: int, n: int = 5) -> list[np.random.Generator]:
    """Independent generators per concern (programming error, stuck faults, drift exponents,
    circuit variation, reads), so enabling one effect never shifts another's draws."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]


def program_devices(spec: DeviceSpec, G_target: np.ndarray, rng_prog, rng_stuck, rng_nu):
    """(G_prog, nu, stuck) for target conductances in device units.

    G_prog = clip(quantise(G_target) + N(0, σ_prog(quantise(G_target))), g_min, g_max); a
    share of devices is then stuck at g_min or g_max (they do not drift: ν = 0); ν per device
    from the target conductance (`statistics.draw_nu`)."""
    G_target = np.asarray(G_target, float)
    G_q = st.quantise(spec, G_target)
    sigma = st.prog_sigma(spec, G_q)
    noise = rng_prog.standard_normal(G_q.shape)
    G = np.clip(G_q + sigma * noise, spec.g_min, spec.g_max)
    u = rng_stuck.random(G.shape)
    stuck = np.where(u < spec.stuck_g_min, STUCK_LOW,
                     np.where(u < spec.stuck_g_min + spec.stuck_g_max, STUCK_HIGH, STUCK_NONE)).astype(np.int8)
    G = np.where(stuck == STUCK_LOW, spec.g_min, np.where(stuck == STUCK_HIGH, spec.g_max, G))
    nu = st.draw_nu(spec, G_q, rng_nu)
    nu = np.where(stuck != STUCK_NONE, 0.0, nu)
    return G, nu, stuck


def device_parameter(device) -> str | None:
    """Which parameter of a diode varies device to device: IS (log-normal) for a junction
    diode, the threshold (normal) for a MOS or behavioural diode."""
    name = type(device).__name__
    return {"ShockleyDiode": "IS", "MOSDiode": "VTO", "IdealDiode": "threshold"}.get(name)


def draw_variation(circuit, variation: VariationSpec, rng) -> dict:
    """Realised amplifier gains and offsets, and per-device diode parameters, as arrays:
    {"amp_gain": (n_amp,), "amp_offset": (n_amp,), "device_params": {layer: {param: (n,)}}}.
    Nothing is drawn (empty dict) when every σ is 0."""
    if not variation.any:
        return {}
    n_amp = len(circuit.amp_gain)
    gain = np.asarray(circuit.amp_gain, float) * (1.0 + variation.gain_sigma * rng.standard_normal(n_amp))
    if np.any(gain <= 0):
        raise ValueError(f"hardware.variation.gain_sigma={variation.gain_sigma!r}: drew a non-positive "
                         "amplifier gain; the spread is too large")
    offset = variation.offset_sigma * rng.standard_normal(n_amp)
    params: dict[str, dict[str, np.ndarray]] = {}
    for blk in circuit.nonlinear:
        n = len(blk.node_terms)
        key = device_parameter(blk.device)
        z = rng.standard_normal(n)
        if key is None:
            continue
        nominal = float(getattr(blk.device, key))
        if key == "IS":
            if variation.is_sigma > 0:
                params[blk.layer.name] = {key: nominal * np.exp(variation.is_sigma * z)}
        elif variation.vto_sigma > 0:
            params[blk.layer.name] = {key: nominal + variation.vto_sigma * z}
    out = {"device_params": params}
    if variation.gain_sigma > 0:
        out["amp_gain"] = gain
    if variation.offset_sigma > 0:
        out["amp_offset"] = offset
    return out


def vary(circuit, realised: dict):
    """The compiled circuit with the realised parameters (analog.circuit.vary_circuit)."""
    if not realised or not (realised.get("device_params") or "amp_gain" in realised or "amp_offset" in realised):
        return circuit
    from ..circuit import vary_circuit
    return vary_circuit(circuit, amp_gain=realised.get("amp_gain"), amp_offset=realised.get("amp_offset"),
                        device_params=realised.get("device_params") or None)

"""The published figures behind the chip's energy model (docs/transient.md, "Where the
figures come from"), each with its source, and the converters' energy per inference and
per training sample.

Every figure is a `Figure(value, unit, source, grade)`; grade says how far it can be trusted:

* "primary": read from the paper named (its title or a table of it);
* "secondary": the named paper's figure as a later source transcribes it (the source says
  which); the paper itself was not read;
* "derived": our arithmetic on sourced figures (the source shows it);
* "assumption": no published figure was found; the value is ours.

Converters (the FoM model of an ADC): a b-bit conversion costs E_ADC(b) = FoM · 2^b, with
FoM = E_ref / 2^b_ref taken from one published converter at b_ref bits (a nominal-bit FoM:
the Walden FoM P / (2^ENOB f_s) would divide by the effective bits instead). Only the 8-bit
figure is published (primary); the 2^b scaling to other widths is an assumption of ours,
not read in a survey or checked against another converter. The input DAC
is bit-serial (ISAAC's scheme: a b-bit input is b cycles of a 1-bit DAC), E_DAC(b) = b · E_1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import AnalogInputError


class Figure(NamedTuple):
    value: float
    unit: str
    source: str
    grade: str


_KULL = ("Kull et al., 'A 3.1 mW 8b 1.2 GS/s single-channel asynchronous SAR ADC with alternate comparators "
         "for enhanced speed in 32 nm digital SOI CMOS', ISSCC 2013, pp. 468-469 (the title's figures); "
         "the ADC of ISAAC (Shafiee et al., ISCA 2016)")
_ISAAC_DAC = ("Shafiee et al., 'ISAAC', ISCA 2016, Table I 'ISAAC parameters' (DAC: 1 bit, 8 x 128 per IMA, 4 mW, "
              "0.00017 mm^2), as transcribed in dyigitpolat/mimarsinan, docs/research/physics/"
              "isaac_constants_research.md, and per DAC in Aayush-Ankit/puma-simulator, include/constants.py "
              "(0.0035 + 0.00039 mW, 1.67e-7 mm^2); the arithmetic is Accelergy's hwcomponents-library, "
              "library/isaac.py (IsaacDAC: 4 mW / (128 x 8 x 1.2e7 conversions/s) = 0.326 pJ, before that file's "
              "128/100 utilisation factor); at the paper's own 100 ns cycle it would be 0.391 pJ")
_LANZA = ("Lanza et al., 'Recommended methods to study resistive switching devices', Adv. Electron. Mater. 5, "
          "1800143 (2019), Table 1: best reported 0.1 pJ per transition and ~ns switching (TiN/Hf/HfOx/TiN, "
          "Govoreanu et al. 2011), technology requirement < 10 ns per transition")
_LEE_PCM = ("Lee, Ipek, Mutlu, Burger, 'Architecting phase change memory as a scalable DRAM alternative', "
            "ISCA 2009, as transcribed in NVSim's sample_PCRAM.cell (SEAL-UCSB/NVSim): RESET 300 uA for 40 ns, "
            "SET 150 uA for 150 ns, R_on = 1 kOhm")
_NEURRAM_SH = ("Wan et al., 'A compute-in-memory chip based on resistive random-access memory', Nature 608 "
               "(2022), as transcribed in Accelergy's hwcomponents-library, library/neurram.py "
               "(NeurramAnalogSample: 1.2 pJ per sample at 130 nm, 1.8 V)")

_HU_CSA = ("Hu, Dai, Wu, Lin, Ji, Li, Wang, 'Low power current-sense amplifier with single-reference reuse "
           "and closed-loop feedback for energy-efficient RRAM computing-in-memory', Microelectronic "
           "Engineering 302, 112406 (2025), abstract: 64.67 uW and 30 ns readout in 180 nm CMOS (against "
           "84.6 uW, 85 ns for the RS-CSA of Ye et al. 2023)")

_ISAAC_SH = ("ISAAC's Table I S+H row (8 x 128 per IMA, 10 uW, 0.00004 mm^2), as transcribed in "
             "dyigitpolat/mimarsinan, docs/research/physics/isaac_constants_research.md (which names the cited "
             "cell: O'Halloran & Sarpeshkar) and per unit in Aayush-Ankit/puma-simulator, include/constants.py "
             "(snh_pow 9.7e-6 mW); 10 uW / 1024")
_OHALLORAN = ("O'Halloran, Sarpeshkar, 'A 10-nW 12-bit accurate analog storage cell with 10-aA leakage', IEEE "
              "JSSC 39(11), 1985 (2004), title; 1.5-um CMOS, medium-term storage (abstract)")
_FDSOI_OTA = ("'0.5 uW sub-threshold operational transconductance amplifiers using 0.15 um fully depleted SOI "
              "process', J. Low Power Electron. Appl. 2(2), 155-167 (2012), doi 10.3390/jlpea2020155, abstract: "
              "NMOS-input OTA, simulated, 0.48 uW at 0.6 V with a 39.6 kHz 3-dB bandwidth (10.8 uW at 1.5 V)")
_TLV8801 = ("Texas Instruments TLV8801 datasheet (ti.com/document-viewer/TLV8801/datasheet): 450 nA typical "
            "supply current per channel; a discrete part, not an on-chip amplifier")

_EKV = ("the EKV model's weak-inversion limit g_m/I_D = 1/(n U_T) (Enz, Krummenacher, Vittoz, Analog Integr. "
        "Circuits Signal Process. 8, 1995, not read here; Wikipedia's 'EKV MOSFET model' names the authors and "
        "year); the relation read in Jespers & Murmann's ch. 2 as plotted in mschweikardt/tikzlib, "
        "figs/ekv-basic-ic-vs-gmid-vs-vgseff.tex: g_m n U_T / I_D = 1/(1 + q), 1 in weak inversion (q -> 0)")
_DERIVED_AMP = ("analog/amplifier_design.py: tau_a = C_L / g_m = r t_s (r = amplifier_time_ratio), I = b n U_T g_m "
                "with b = 2 branches of a differential pair, U_T = kT/q at 300 K, n = slope_factor; " + _EKV)
_DERIVED_SH = ("analog/amplifier_design.py: kT/C at most the quantisation noise LSB^2/12 (the relation as stated "
               "in bbs.eetop.cn thread 162773, a forum; textbook physics), the hold buffer sized by the amplifiers' "
               "rule (" + _EKV + ")")

#: the figures of the energy model, by name
FIGURES: dict[str, Figure] = {
    "adc_energy_8bit": Figure(3.1e-3 / 1.2e9, "J per 8-bit conversion", _KULL + ": 3.1 mW / 1.2 GS/s", "primary"),
    "adc_ref_bits": Figure(8, "bits", _KULL, "primary"),
    "adc_conversion_time": Figure(1 / 1.2e9, "s per conversion", _KULL + ": 1 / 1.2 GS/s", "primary"),
    "dac_energy_per_bit": Figure(4e-3 / (128 * 8 * 1.2e7), "J per 1-bit conversion", _ISAAC_DAC, "secondary"),
    "rram_pulse_energy": Figure(0.1e-12, "J per pulse (SET or RESET)", _LANZA, "secondary"),
    "rram_pulse_duration": Figure(10e-9, "s per pulse", _LANZA + " (the requirement's bound, not the best "
                                  "device's ~1 ns)", "secondary"),
    "pcm_set_duration": Figure(150e-9, "s", _LEE_PCM, "secondary"),
    "pcm_reset_duration": Figure(40e-9, "s", _LEE_PCM, "secondary"),
    "pcm_set_energy": Figure(150e-6 ** 2 * 1e3 * 150e-9, "J", _LEE_PCM + "; I^2 R_on t in the cell alone "
                             "(no access device, no driver)", "derived"),
    "pcm_reset_energy": Figure(300e-6 ** 2 * 1e3 * 40e-9, "J", _LEE_PCM + "; I^2 R_on t in the cell alone "
                               "(no access device, no driver)", "derived"),
    "sample_hold_energy": Figure(1.2e-12, "J per sample", _NEURRAM_SH, "secondary"),
    "sample_hold_acquire": Figure(9.357e-11, "s (main job's block; derived per block)", _DERIVED_SH + "; "
                                  "t_acq = ln(2^(N+1)) (R_on C_H + tau_buf), R_on C_H = tau_buf = r t_s: "
                                  "ln(512) x 2 x 7.5 ps = 93.6 ps. Bound: Kull's 1.2 GS/s ADC samples once per "
                                  "0.83 ns", "derived"),
    "sample_hold_capacitance": Figure(8.143e-16, "F", _DERIVED_SH + ": C_H >= 12 kT 2^(2N) / V_FS^2 at N = 8 "
                                      "bits over V_FS = 2 V, 300 K", "derived"),
    "sample_hold_bias": Figure(7.860e-6, "A per hold buffer (main job's block; derived per block)", _DERIVED_SH
                               + ": I = b n U_T C_H / (r t_s) = 2 x 1.4 x 25.85 mV x 0.814 fF / 7.5 ps", "derived"),
    "amplifier_supply": Figure(1.2, "V", "twice EBANA's mid-rail V_ref = 0.6 V (Watfa, Garcia-Ortiz, "
                               "Sassatelli, Front. Comput. Neurosci. 17, 2023)", "derived"),
    "amplifier_bias": Figure(5.791e-5, "A per amplifier (main job's block; derived per block)", _DERIVED_AMP
                             + ": C_L = 20 cells x 0.3 fF = 6 fF, t_s = 75 ps (median settling of 16 random "
                             "inputs), so g_m = 0.8 mS and I = 2 x 1.4 x 25.85 mV x 0.8 mS; a lower bound (weak "
                             "inversion has the largest g_m/I_D)", "derived"),
    "boltzmann": Figure(1.380649e-23, "J/K", "SI (2019 redefinition): exact", "primary"),
    "elementary_charge": Figure(1.602176634e-19, "C", "SI (2019 redefinition): exact", "primary"),
    "slope_factor": Figure(1.4, "(dimensionless, n)", "ours: above the n = 1-1.3 of the only source read (a "
                           "study note on a textbook chapter 'Models for Analog Design', "
                           "juejin.cn/post/7245204303485042749); kept because I is proportional to n, so 1.4 gives "
                           "8 % more bias than n = 1.3 (errs against the chip); no PDK figure was read", "assumption"),
    "amplifier_time_ratio": Figure(0.1, "tau_a / t_s", "ours: a design choice, the amplifier's time constant a "
                                   "tenth of the settling it serves; a first-order lag of tau_a delays the "
                                   "settling by at most about tau_a (tests/test_amplifier_design.py checks it with "
                                   "ngspice)", "assumption"),
    "cim_sense_amplifier_power": Figure(64.67e-6, "W per current-sense amplifier (180 nm; reference only, not "
                                        "used by the model)", _HU_CSA, "primary"),
    # reference figures: bounds and comparisons for the assumptions above, not used by the model
    "isaac_sample_hold_power": Figure(10e-6 / (8 * 128), "W per S&H (32 nm model, 100 ns cycle; reference only)",
                                      _ISAAC_SH, "secondary"),
    "analog_storage_cell_power": Figure(10e-9, "W per analog storage cell (reference only)", _OHALLORAN,
                                        "primary"),
    "subthreshold_ota_power": Figure(0.48e-6, "W per OTA at 0.6 V (reference only)", _FDSOI_OTA, "primary"),
    "discrete_opamp_current": Figure(450e-9, "A per channel (discrete; reference only)", _TLV8801, "primary"),
}


def _check_bits(bits, key: str):
    if bits is not None and not (int(bits) == bits and bits >= 1):
        raise AnalogInputError(f"{key}={bits!r} must be an integer >= 1 (or null: no converter)")


@dataclass(frozen=True)
class ConverterEnergy:
    """Energy per conversion of the chip's converters (the module docstring's model)."""
    adc_energy_ref: float = FIGURES["adc_energy_8bit"].value
    adc_ref_bits: int = 8
    dac_energy_per_bit: float = FIGURES["dac_energy_per_bit"].value

    def __post_init__(self):
        for key in ("adc_energy_ref", "dac_energy_per_bit"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= 0):
                raise AnalogInputError(f"converters.{key}={value!r} must be a finite number >= 0")

    @property
    def fom(self) -> float:
        """J per conversion step (nominal bits)."""
        return self.adc_energy_ref / 2 ** self.adc_ref_bits

    def adc(self, bits) -> float:
        _check_bits(bits, "adc.bits")
        return 0.0 if bits is None else self.fom * 2 ** int(bits)

    def dac(self, bits) -> float:
        _check_bits(bits, "dac.bits")
        return 0.0 if bits is None else self.dac_energy_per_bit * int(bits)


@dataclass(frozen=True)
class ConverterCost:
    """A chip's converters: their widths (None: ideal, not counted) and energies."""
    dac_bits: int | None
    adc_bits: int | None
    energy: ConverterEnergy = ConverterEnergy()

    def __post_init__(self):
        _check_bits(self.dac_bits, "dac.bits")
        _check_bits(self.adc_bits, "adc.bits")

    def inference(self, n_inputs: int, n_outputs: int) -> float:
        """J per inference: every input converted once, every output read once."""
        return n_inputs * self.energy.dac(self.dac_bits) + n_outputs * self.energy.adc(self.adc_bits)

    def training(self, n_inputs: int, n_outputs: int, n_nudged: int) -> float:
        """J per training sample: the inputs once (held through every phase), the outputs read
        once after the free phase (they set the nudge), and each output's nudging current set
        by a DAC of the same width in each nudged phase."""
        return self.inference(n_inputs, n_outputs) + n_nudged * n_outputs * self.energy.dac(self.dac_bits)


def converter_cost_of(circuit, energy: ConverterEnergy | None = None) -> ConverterCost | None:
    """The converters of a chip's circuit (analog/hardware/converters.py), None without any."""
    edges = getattr(circuit, "edges", None)
    if edges is None or (edges.dac_spec.bits is None and edges.adc_spec.bits is None):
        return None
    return ConverterCost(edges.dac_spec.bits, edges.adc_spec.bits, energy or ConverterEnergy())

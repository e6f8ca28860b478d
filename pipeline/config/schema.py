"""The experiment-config schema, declared once as pydantic models.

Each field carries its type, default, range or choices and a one-line doc
(`description`). The models are strict (an int is not a float written as 2.0, a bool is
not a number), forbid unknown keys, and check what spans several keys (g_min < g_max,
the encoder's voltage range inside the analog block's input range) so every command
sees the same rules. The validated `RootConfig` is what the rest of the pipeline receives
(pipeline.config.validate_config); its defaults live here only.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from analog.builders import BLOCK_DEFAULTS
from analog.specs import OptimizerSpec, TrainingSpec

from .fields import PRINTABLE, F, Num, NumOrDerived, PosInt, Section, _ordered, section
from .hardware_section import HardwareConfig, preset_overrides  # noqa: F401  (used by pipeline.system)
from .layers import check_layers, layer_specs

__all__ = ["RootConfig", "Section", "BLOCK_DEFAULTS"]

# One set of defaults for the analog block and its training: analog's specs and the config share them.
A, D = BLOCK_DEFAULTS, BLOCK_DEFAULTS["diode"]
T, O = TrainingSpec(), OptimizerSpec()


# --------------------------------------------------------------------------- sections
class DataConfig(Section):
    dataset: Literal["fashion_mnist", "iris", "wine", "xor", "digits"] = F(
        "fashion_mnist", "data set (digits: scikit-learn's 8 × 8 digits, 64 pixel features, tabular)")
    path: str | None = F(None, "folder with the Fashion-MNIST gzip IDX files")
    validation_fraction: Num = F(0.1, "share of the training data held out for validation", gt=0, lt=0.5)
    test_fraction: Num = F(0.2, "share held out for test (tabular data; Fashion-MNIST has its own test set)",
                           gt=0, lt=0.5)
    limit_train: int | None = F(None, "stratified slice of the training set", ge=1)
    limit_test: int | None = F(None, "stratified slice of the test set", ge=1)
    xor_samples: int = F(200, "xor: number of samples", ge=8, le=1_000_000)
    xor_noise: Num = F(0.1, "xor: Gaussian noise on the corners", ge=0)


class DiodeConfig(Section):
    model: Literal["shockley", "ideal", "mos"] = F(D["model"], "diode device")
    is_: Num = Field(D["is"], alias="is", gt=0, description="Shockley saturation current IS, A")
    n: Num = F(D["n"], "Shockley emission coefficient N", gt=0)
    rs: Num = F(D["rs"], "Shockley series resistance RS, ohm", ge=0)
    up_bias: Num = F(D["up_bias"], "bias of the diodes clamping from above, V relative to V_ref")
    down_bias: Num = F(D["down_bias"], "bias of the diodes clamping from below, V relative to V_ref")
    threshold: Num = F(D["threshold"], "ideal diode threshold / MOS VTO, V")
    r_on: Num = F(D["r_on"], "ideal diode on-resistance, ohm", gt=0)
    smoothing: Num = F(D["smoothing"], "ideal diode knee width, V", gt=0)
    kp: Num = F(D["kp"], "MOS transconductance parameter KP, A/V²", gt=0)
    lambda_: Num = Field(D["lambda"], alias="lambda", ge=0, description="MOS channel-length modulation LAMBDA, 1/V")
    w: Num = F(D["w"], "MOS channel width W, m", gt=0)
    l: Num = F(D["l"], "MOS channel length L, m", gt=0)  # noqa: E741


class CapacitanceConfig(Section):
    wire_per_cell: Num = F(0.2e-15, "crossbar wire capacitance per cell a node's row or column spans, F (NeuroSim's "
                                    "0.2 fF/µm times a 1 µm cell pitch; docs/transient.md)", gt=0)
    device_per_cell: Num = F(0.1e-15, "device (cell) capacitance per cell on the node's wire, F", gt=0)
    diode: Num = F(1e-15, "junction capacitance per diode at the node, F", gt=0)
    amplifier_input: Num = F(10e-15, "input capacitance of the amplifier a node drives, F", gt=0)
    sigma: Num = F(0.1, "chips: per-node log-normal spread of the capacitance (0: every chip as designed)", ge=0)


class AnalogConfig(Section):
    hidden: list[PosInt] = F(A["hidden"], "hidden layer sizes (dense layers; the short form of analog.layers, "
                                          "which overrides it and then sets it to the layers' node counts)")
    layers: list[Any] | None = F(None, "hidden layers one by one: {type: dense, units: 100} or {type: "
                                       "locally_connected2d, kernel: [4, 4], strides: [2, 2], filters: 4, "
                                       "input_shape: [H, W, C], padding: valid|same} (input_shape: needed on a first layer, the "
                                       "inputs' layout), each optionally with diodes, amplifier (true/false) "
                                       "and gain (docs/design.md)")
    vref: Num = F(A["vref"], "reference (common-mode) voltage, V")
    input_amplitude: Num = F(A["input_amplitude"], "inputs span V_ref ± this, V", gt=0)
    g_min: Num = F(A["g_min"], "smallest device conductance, S", gt=0)
    g_max: Num = F(A["g_max"], "largest device conductance, S", gt=0)
    init: Literal["uniform", "glorot"] = F(A["init"], "conductance initialiser")
    gain: Num = F(A["gain"], "amplifier gain A", ge=1, le=1000)
    bias_levels: list[Num] = F(A["bias_levels"], "bias sources per layer, V relative to V_ref")
    gmin: Num = F(A["gmin"], "shunt conductance from every free node to ground, S", ge=0)
    diode: DiodeConfig = section(DiodeConfig, "the diodes after each crossbar")
    capacitance: CapacitanceConfig = section(CapacitanceConfig, "capacitance at every free node (transients)")

    @model_validator(mode="after")
    def _g_range(self):
        if self.layers is not None:
            given = self.hidden if "hidden" in self.model_fields_set else None
            layers, hidden = check_layers(self.layers, given)
            _ordered(self, "analog", "g_min", "g_max")
            return self.model_copy(update={"layers": layers, "hidden": hidden})   # the normalised specs
        return _ordered(self, "analog", "g_min", "g_max")


class OptimizerConfig(Section):
    name: Literal["adam", "sgd", "momentum"] = F(O.name, "optimiser on the conductances")
    lr: Num = F(O.lr, "learning rate (normalised device units)", gt=0)
    momentum: Num = F(O.momentum, "momentum coefficient", ge=0, lt=1)
    schedule: Literal["none", "step", "cosine"] = F(O.schedule, "learning-rate schedule")
    step_size: int = F(O.step_size, "step schedule: epochs per decay", ge=1)
    step_gamma: Num = F(O.step_gamma, "step schedule: decay factor", gt=0, le=1)


class PhasesConfig(Section):
    t_free: Num = F(..., "free phase: simulated from rest for this long; its outputs then set the nudge, s", gt=0)
    t_nudged: Num = F(..., "each nudged phase: simulated from the free phase's last state for this long, s", gt=0)
    steps: int = F(50, "backward-Euler steps per phase", ge=1, le=100_000)


class TrainingConfig(Section):
    engine: Literal["native", "ngspice"] = F(T.engine, "circuit simulator used for training")
    loss: Literal["mse", "cross_entropy"] = F(T.loss, "cost on the differential outputs")
    temperature: Num = F(T.temperature, "cross-entropy: softmax(y / T), T in volts (class scores spread by ~0.2 V)", gt=0)
    mse_midpoint: Num = F(T.mse_midpoint, "MSE: targets are midpoint ± amplitude")
    mse_amplitude: Num = F(T.mse_amplitude, "MSE: target amplitude, V", gt=0)
    beta: Num = F(T.beta, "nudging strength: I = −β ∂C/∂y, A", gt=0)
    nudging: Literal["symmetric", "positive"] = F(T.nudging, "EP nudging")
    algorithm: Literal["ep", "c-ep"] = F(T.algorithm, "ep, or c-ep: continual EP, the conductances updated in "
                                               "training.cep_steps local steps during the nudged phase (sgd only)")
    cep_steps: int = F(T.cep_steps, "c-ep: steps of the nudged phase, each with its own local update", ge=1, le=10_000)
    optimizer: OptimizerConfig = section(OptimizerConfig, "the optimiser of the conductances")
    epochs: int = F(T.epochs, "EP training epochs", ge=1)
    batch_size: int = F(T.batch_size, "EP mini-batch size", ge=1)
    workers: int = F(T.workers, "ngspice worker processes", ge=1, le=256)
    gradient: Literal["ep", "exact"] = F(
        T.gradient, "what each training step follows: ep (the Equilibrium Propagation estimate, on the training engine) "
              "or exact (the implicit gradient at the free operating point, native engine only: EP's ideal)")
    phases: PhasesConfig | None = F(
        None, "EP with its phases cut short (analog.training_energy.PhaseCut, docs/transient.md): each mini-batch's "
              "estimate from transients of t_free and t_nudged on the native engine, in train-analog (chip "
              "fine-tuning keeps EP at the operating points); absent = EP at the operating points")

    @model_validator(mode="after")
    def _phases_replace_ep_only(self):
        if self.phases is not None and (self.algorithm, self.gradient, self.engine) != ("ep", "ep", "native"):
            raise ValueError(f"training.phases replaces the EP estimate by transients on the native engine: needs "
                             f"training.algorithm='ep', gradient='ep' and engine='native' (got {self.algorithm!r}, "
                             f"{self.gradient!r}, {self.engine!r})")
        return self

    @model_validator(mode="after")
    def _exact_on_native(self):
        if self.gradient == "exact" and self.engine != "native":
            raise ValueError(f"training.gradient='exact' is computed on the native engine; "
                             f"training.engine={self.engine!r} trains by EP only")
        return self

    @model_validator(mode="after")
    def _cep_needs_sgd(self):
        if self.algorithm == "c-ep" and self.optimizer.name != "sgd":
            raise ValueError(f"training.algorithm='c-ep' and training.optimizer.name={self.optimizer.name!r}: "
                             "continual EP applies its local updates as plain SGD steps; use sgd")
        return self


class DigitalConfig(Section):
    encoder: str = F("cnn", "cnn | mlp | pca | package.module:factory | none (no encoder: the analog block takes "
                            "the pixels as volts, v_low..v_high; train-analog and evaluate only)", min_length=1)
    embedding_dim: int = F(150, "embedding width (= analog block inputs)", ge=1, le=100_000)
    epochs: int = F(10, "encoder training epochs", ge=1)
    batch_size: int = F(128, "encoder batch size", ge=1)
    lr: Num = F(1e-3, "encoder learning rate", gt=0)
    v_low: Num = F(-1.0, "lowest embedding voltage (relative to V_ref); within ±analog.input_amplitude")
    v_high: Num = F(1.0, "highest embedding voltage (relative to V_ref); within ±analog.input_amplitude")
    retrain_epochs: int = F(2, "epochs of retraining to target embeddings", ge=1)
    target_weight: Num = F(1.0, "weight of the target-embedding MSE when retraining", ge=0)
    class_weight: Num = F(0.1, "weight of the classification loss when retraining", ge=0)
    retrain_method: Literal["targets", "through-analog", "both"] = F(
        "targets", "retrain-digital: targets (regress onto the optimised inputs), through-analog (backpropagate "
                   "the block's EP input gradient into the encoder; Keras encoders only) or both (targets, then "
                   "through-analog)")
    through_lr: Num = F(1e-3, "Adam learning rate of through-analog retraining (retrain_epochs epochs)", gt=0)
    through_loss: Literal["block", "cross_entropy"] = F(
        "block", "the cost through-analog retraining descends: the block's own training cost, or the softmax "
                 "cross-entropy of its class scores at digital.through_temperature (on a damaged chip the block's "
                 "MSE is mostly output levels the encoder cannot reach: experiments/README.md, frozen-chip recovery)")
    through_temperature: Num = F(0.1, "temperature of through_loss: cross_entropy, V", gt=0)
    params: dict[str, Any] = F({}, "extra encoder constructor parameters, e.g. {filters: [32, 64, 128]} "
                                   "or {hidden: [256]}")

    @model_validator(mode="after")
    def _v_range(self):
        return _ordered(self, "digital", "v_low", "v_high")


class InputOptimizationConfig(Section):
    lr: Num = F(0.05, "step size on the input voltages", gt=0)
    steps: int = F(50, "step budget per sample", ge=1)
    margin: Num = F(0.1, "required margin y_true − max other, V", ge=0)
    update: Literal["normalized", "gradient", "sign"] = F(
        "normalized", "step rule: normalized (largest component moves lr V), gradient (x −= lr·dC/dx), sign")
    method: Literal["ep", "exact"] = F("ep", "input gradient: EP (source currents) or exact (checks)")
    batch_size: int = F(2000, "samples solved together", ge=1)
    step_growth: Num = F(1.0, "a sample still short of the margin takes its next step this many times longer "
                              "(up to 4·lr); 1: fixed steps", ge=1)
    cost: Literal["block", "cross_entropy", "margin"] = F(
        "block", "the cost descended on the inputs: the block's own training cost (MSE to ±amplitude targets), "
                 "the softmax cross-entropy of its class scores at input_optimization.temperature (the cost of "
                 "digital.through_loss: cross_entropy), or a hinge on the class-score margin "
                 "(input_optimization.margin); the stop is the margin in every case")
    temperature: Num = F(0.1, "temperature of cost: cross_entropy, V", gt=0)
    shift_penalty: Num = F(0.0, "λ of a penalty λ/2·‖x − x₀‖² on each sample's shift from its embedding x₀ "
                                "(1/V²), added to the cost: targets stay near what the encoder makes; 0: none", ge=0)


class CotrainConfig(Section):
    rounds: int = F(1, "input-optimisation / retraining rounds", ge=0, le=1000)
    analog_epochs: int | None = F(None, "EP epochs of the analog block in rounds after the first "
                                        "(default: training.epochs)", ge=1)


class BaselineConfig(Section):
    enabled: bool = F(True, "evaluate: train the same dense network by backprop (Keras) on the same embeddings")
    epochs: int = F(10, "baseline training epochs", ge=1)
    batch_size: int = F(128, "baseline batch size", ge=1)
    lr: Num = F(1e-3, "baseline Adam learning rate", gt=0)


class MlflowConfig(Section):
    experiment: str | None = F(None, "MLflow experiment (default: name)", min_length=1, max_length=200,
                               pattern=PRINTABLE)
    register_model: str | None = F(None, "register the MLflow model of the trained system under this name in the "
                                         "model registry (cotrain: the parent run's model; evaluate run alone: its own)",
                                   min_length=1, max_length=200, pattern=PRINTABLE)


class InputsConfig(Section):
    from_run: str | None = F(None, "stage commands: MLflow run whose outputs (and their sources) feed the stage")
    encoder: str | None = F(None, "stage commands: encoder folder, or run id providing one")
    embeddings: str | None = F(None, "stage commands: embeddings folder, or run id providing one")
    analog: str | None = F(None, "stage commands: analog model folder, or run id providing one")
    targets: str | None = F(None, "stage commands: target-embeddings folder, or run id providing one")


class TransientConfig(Section):
    samples: int = F(200, "evaluate: test samples simulated in time (ideal block and each chip)", ge=1, le=100_000)
    duration: Num = F(2e-9, "simulated time per inference, s (a sample not settled by then is counted)", gt=0)
    dt: Num = F(5e-12, "time step, s (must be below transient.duration)", gt=0)
    rise: Num = F(10e-12, "rise time of the input ramp, s", ge=0)
    method: Literal["be", "midpoint"] = F("be", "integration: backward Euler or the implicit midpoint rule")
    readout_bits: int = F(8, "settling tolerance: half an LSB of a readout of this many bits", ge=1, le=24)
    readout_range: Num = F(2.0, "settling tolerance: the readout's full range, V", gt=0)
    amplifier_supply: Num = F(1.2, "amplifier supply voltage V_DD, V (docs/transient.md)", gt=0)
    amplifier_bias: NumOrDerived = F(
        "derived", "amplifier quiescent current, A, or derived: from the settling time and the load the "
        "amplifier drives, I = 2 n U_T C_L / (amplifier_time_ratio · t_settle) (docs/transient.md)")
    amplifier_time_ratio: Num = F(0.1, "derived bias: the amplifier's time constant C_L/g_m as a fraction of the "
                                  "median settling time", gt=0, le=1)
    amplifier_slope: Num = F(1.4, "derived bias: the transistors' weak-inversion slope factor n", ge=1, le=3)

    @model_validator(mode="after")
    def _step_below_duration(self):
        if not self.dt < self.duration:
            raise ValueError(f"transient.dt={self.dt!r} and transient.duration={self.duration!r}: the time step "
                             "must be below the simulated duration")
        return self


class RootConfig(Section):
    name: str = F(..., "experiment name (also the MLflow experiment unless mlflow.experiment is set)",
                  min_length=1, max_length=200, pattern=PRINTABLE)
    seed: int = F(0, "seed for splits, initialisation and shuffling", ge=0)
    data: DataConfig = section(DataConfig, "data set and splits")
    analog: AnalogConfig = section(AnalogConfig, "the analog block (EBANA-style dense network)")
    training: TrainingConfig = section(TrainingConfig, "EP training of the analog block")
    digital: DigitalConfig = section(DigitalConfig, "the digital encoder")
    input_optimization: InputOptimizationConfig = section(
        InputOptimizationConfig, "target embeddings by gradient steps on the analog inputs")
    cotrain: CotrainConfig = section(CotrainConfig, "co-training rounds")
    baseline: BaselineConfig = section(BaselineConfig, "backprop baseline on the same embeddings")
    mlflow: MlflowConfig = section(MlflowConfig, "tracking")
    inputs: InputsConfig = section(InputsConfig, "inputs of stage commands")
    hardware: HardwareConfig | None = F(None, "real devices: preset, chips, read times; "
                                              "absent = an ideal block")
    transient: TransientConfig | None = F(None, "evaluate: settling time and energy per inference from transient "
                                                "simulations (docs/transient.md); absent = none")

    @model_validator(mode="after")
    def _pairs_fit_the_block(self):
        """A pair preset (rram-2t2r) needs every crossbar to hold pairs: checked here, before any work."""
        if self.hardware is None:
            return self
        from analog.hardware import resolve_hardware
        from analog.hardware.pairs import check_block
        spec = resolve_hardware(self.hardware.preset, preset_overrides(self.hardware))
        check_block(spec, layer_specs(self.analog), self.analog.bias_levels, self.hardware.training)
        return self

    @model_validator(mode="after")
    def _embeddings_fit_the_block(self):
        amp, d = self.analog.input_amplitude, self.digital
        if d.v_low < -amp - 1e-12 or d.v_high > amp + 1e-12:
            raise ValueError(f"digital.v_low={d.v_low!r} and digital.v_high={d.v_high!r}: must lie within "
                             f"±analog.input_amplitude = ±{amp!r} V (the analog block's input range)")
        return self


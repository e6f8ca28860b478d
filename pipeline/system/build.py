"""Config → the two halves of the system: the analog block (AnalogModel, built and
compiled from the `analog` and `training` sections) and the digital encoder (from the
`digital` section, any encoder honouring digital's contract)."""
from __future__ import annotations
from pipeline.errors import SetupError

import inspect

from pipeline.system.analog_block import model_from_config


def analog_model(cfg: RootConfig, n_features: int, n_classes: int, compile: bool = True):
    """A fresh analog block for `n_features` input voltages and `n_classes` outputs (refused
    first if it cannot fit in memory: pipeline.runtime.limits)."""
    from pipeline.runtime.limits import check_block_size
    check_block_size(cfg.analog.hidden, n_features, n_classes)
    return model_from_config(cfg, n_features, n_classes, compile=compile)


def _encoder_factory(spec: str):
    import digital
    from digital.base import import_object
    builtin = {"cnn": "CNNEncoder", "mlp": "MLPEncoder", "pca": "PCAEncoder"}
    key = spec.strip().lower()
    if key in builtin:
        return getattr(digital, builtin[key])
    if ":" in spec:
        return import_object(spec.strip(), what="encoder factory")
    return None   # a registered name: its factory is not inspectable, pass every parameter


def encoder_params(cfg: RootConfig) -> dict:
    """Constructor parameters for the configured encoder: the common ones, the training
    settings it accepts (epochs, batch_size, learning_rate, target_epochs) and
    digital.params, filtered to what the factory's signature takes."""
    d = cfg.digital
    params = {"embedding_dim": d.embedding_dim, "v_low": d.v_low, "v_high": d.v_high,
              "seed": cfg.seed}
    optional = {"epochs": d.epochs, "batch_size": d.batch_size, "learning_rate": d.lr,
                "target_epochs": d.retrain_epochs}
    extra = dict(d.params)
    factory = _encoder_factory(d.encoder)
    if factory is not None:
        try:
            sig = inspect.signature(factory)
        except (TypeError, ValueError):
            sig = None
        if sig is not None and not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            optional = {k: v for k, v in optional.items() if k in sig.parameters}
            unknown = [k for k in extra if k not in sig.parameters]
            if unknown:
                raise SetupError(f"digital.params.{unknown[0]}: the encoder {d.encoder!r} takes no parameter "
                                 f"{unknown[0]!r}; it takes {', '.join(p for p in sig.parameters if p != 'self')}")
    for k, v in extra.items():
        params[k] = tuple(v) if isinstance(v, list) else v
    return {**params, **optional, **{k: params[k] for k in extra}}


def encoder(cfg: RootConfig):
    """A fresh (untrained) encoder from the config's `digital` section."""
    from digital import make_encoder
    return make_encoder(cfg.digital.encoder, **encoder_params(cfg))


def check_fitted_encoder(cfg: RootConfig, enc, images, when: str = "after fit") -> None:
    """The encoder contract (embedding shape, finite values in [v_low, v_high]) checked on a
    few training images right after the encoder was (re)trained, so an encoder that breaks
    it fails here, naming itself, not later in a matrix product."""
    from digital import EncoderContractError, check_encoder
    d = cfg.digital
    name = f"digital.encoder={d.encoder!r} ({type(enc).__name__})"
    try:
        check_encoder(enc, images[:256], d.embedding_dim, d.v_low, d.v_high)
    except EncoderContractError as exc:
        raise EncoderContractError(f"{name} {when}: {exc}") from None
    except Exception as exc:   # embed() itself failed
        raise EncoderContractError(f"{name} {when}: embedding {min(len(images), 256)} training images failed: "
                                   f"{type(exc).__name__}: {exc}") from None


def check_configured_encoder(cfg: RootConfig, sample: int = 300) -> None:
    """Build the configured encoder and embed a stratified sample of training images with
    it, so that a factory that does not import, bad digital.params, or an encoder breaking
    the contract (output shape, values outside [v_low, v_high]) fail before any training.
    Raises ValueError naming the problem (EncoderContractError is one)."""
    from digital import EncoderContractError, check_encoder
    from pipeline.data import load_dataset
    d = cfg.digital
    data_cfg = cfg.data.model_copy(update={"limit_train": sample, "limit_test": 10})
    ds = load_dataset(data_cfg, seed=cfg.seed)
    try:
        enc = encoder(cfg)
        check_encoder(enc, ds.x_train, d.embedding_dim, d.v_low, d.v_high, labels=ds.y_train)
    except (EncoderContractError, ValueError, TypeError, ImportError) as exc:
        raise SetupError(f"digital.encoder={d.encoder!r}: {exc}") from None
    except Exception as exc:   # a plug-in's own bug: name the encoder, not a traceback
        raise SetupError(f"digital.encoder={d.encoder!r} failed while being built or tried on {sample} "
                         f"training images: {type(exc).__name__}: {exc}") from None


def plugin_modules(cfg: RootConfig) -> tuple[str, ...]:
    """The module a config's plug-in encoder spec ('package.module:factory') names: the
    one module an encoder manifest of this config may have its class imported from."""
    spec = str(cfg.digital.encoder).strip()
    return (spec.partition(":")[0],) if ":" in spec else ()


def load_encoder(cfg: RootConfig, folder):
    """A saved encoder of this config's runs (digital.load_encoder, trusting the config's plug-in)."""
    from digital import load_encoder as load
    return load(folder, modules=plugin_modules(cfg))

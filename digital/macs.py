"""The cost of a Keras encoder: multiply-accumulates per image, counted from its layers."""

from __future__ import annotations

import numpy as np


def keras_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass of one sample through ``model``, counted
    from its layers' shapes: Conv2D ``H_out·W_out·C_out·k_h·k_w·C_in/groups``,
    DepthwiseConv2D ``H_out·W_out·C_in·mult·k_h·k_w``, Dense ``inputs·units``. Bias adds,
    batch normalisation (folded into the convolution at inference), activations, pooling
    and the volts rescaling are element-wise and not counted. Any other layer with weights
    raises ValueError (it would be counted wrongly)."""
    import keras     # on call: digital.keras_base chooses the backend before Keras loads
    L = keras.layers
    total = 0
    for layer in model.layers:
        if isinstance(layer, L.DepthwiseConv2D):
            _, h, w, _ = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += h * w * c_in * layer.depth_multiplier * kh * kw
        elif isinstance(layer, L.Conv2D) and not isinstance(layer, L.Conv2DTranspose):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += h * w * c_out * kh * kw * c_in // layer.groups
        elif isinstance(layer, L.Dense):
            total += int(np.prod(layer.input.shape[1:])) * layer.units
        elif isinstance(layer, (L.BatchNormalization, L.Rescaling)) or not layer.weights:
            continue
        else:
            raise ValueError(f"keras_macs: cannot count layer {layer.name!r} ({type(layer).__name__})")
    return int(total)

"""Locally connected crossbars: `LocallyConnected2D`, and `Rearrange` to lay nodes out as an image.

    x = InputVoltage(H * W)                          # pixels, ± copies
    img = pixel_nodes(x, (H, W, 1))                  # (H, W, 2): channel 0 = V_ref + x, 1 = V_ref − x
    b = BiasVoltage([1.0, -1.0])
    h = LocallyConnected2D(4, kernel=(4, 4), strides=(2, 2), input_shape=(H, W, 2))(Concatenate()([img, b]))

A LocallyConnected2D layer is a crossbar in which output node (i, j, f) (row-major over
(OH, OW, filters)) is wired only to the input nodes of its own kh×kw×C patch, each edge with
its own conductance (no weight sharing, as in EBANA), plus every node after the H·W·C image
nodes (bias sources, say), which feed every output as a Dense layer's bias columns do.
Its conductances are stored compactly, G of shape (n_out, patch_size), with `cols`
(n_out, patch_size) giving the input node (column of the would-be dense crossbar) of each
entry; the engines, EP, the netlist and the optimisers work on that compact array.

Padding. 'valid': every output sees a patch inside the image, OH = (H − kh) // sh + 1.
'same' (Keras's convention): OH = ⌈H / sh⌉, the image padded with zero pixels, the extra
row/column going to the bottom/right when the padding is odd. A zero pixel is a node at
V_ref (0 V relative to it), so the layer brings its own zero-volt source node (`pad_spec`,
a crossbar column after the wired ones), and a border patch's entries outside the image
are conductances to that node: real resistors, trained like the others, pulling the
border node towards V_ref as a zero pixel would. Every row keeps the full kh·kw·C + extra
entries, so the compact array stays rectangular.
"""
from __future__ import annotations

import numpy as np

from .layers import Concatenate, Dense, Nodes, NodeSpec, _check_range  # noqa: F401


def _pair(value, key: str, owner: str) -> tuple[int, int]:
    v = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(v) != 2 or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in v):
        raise ValueError(f"{owner}: {key}={value!r} must be an integer or a pair of integers")
    if min(v) <= 0:
        raise ValueError(f"{owner}: {key}={value!r} must be > 0")
    return int(v[0]), int(v[1])


def output_hw(input_hw, kernel, strides, padding: str = "valid") -> tuple[int, int]:
    """(OH, OW): 'valid' (H − kh) // sh + 1, 'same' ⌈H / sh⌉."""
    if padding == "same":
        return tuple(-(-n // s) for n, s in zip(input_hw, strides))
    return tuple((n - k) // s + 1 for n, k, s in zip(input_hw, kernel, strides))


def patch_columns(input_shape, kernel, strides, extra: int = 0, padding: str = "valid") -> np.ndarray:
    """Input column of every conductance, per output position (not per filter) →
    (OH·OW, kh·kw·C + extra): patch entries in (di, dj, c) row-major order, then the `extra`
    shared columns H·W·C … H·W·C + extra − 1. With padding 'same', patch entries outside the
    image are column H·W·C + extra (the zero-volt pad node)."""
    H, W, C = input_shape
    kh, kw = kernel
    sh, sw = strides
    oh, ow = output_hw((H, W), kernel, strides, padding)
    top = max((oh - 1) * sh + kh - H, 0) // 2 if padding == "same" else 0
    left = max((ow - 1) * sw + kw - W, 0) // 2 if padding == "same" else 0
    i = (np.arange(oh) * sh - top)[:, None, None, None, None] + np.arange(kh)[None, None, :, None, None]
    j = (np.arange(ow) * sw - left)[None, :, None, None, None] + np.arange(kw)[None, None, None, :, None]
    c = np.arange(C)[None, None, None, None, :]
    idx = (i * W + j) * C + c
    outside = (i < 0) | (i >= H) | (j < 0) | (j >= W)
    idx = np.where(outside, H * W * C + extra, idx)
    idx = np.broadcast_to(idx, (oh, ow, kh, kw, C)).reshape(oh * ow, kh * kw * C)
    shared = np.broadcast_to(H * W * C + np.arange(extra), (oh * ow, extra))
    return np.concatenate([idx, shared], axis=1).astype(int)


class LocallyConnected2D(Dense):
    """Crossbar where each output node sees its own patch of an (H, W, C) node image.

    filters: output nodes per position; kernel, strides: ints or pairs; input_shape: (H, W, C),
    the layout (row-major) of the first H·W·C nodes the layer is called on; nodes beyond them
    are shared columns wired to every output; padding: 'valid' or 'same' (zero pixels: a
    zero-volt source node of the layer's own, see the module docstring). Output nodes:
    (OH, OW, filters) row-major, OH = (H − kh) // sh + 1 ('valid') or ⌈H / sh⌉ ('same').
    g_min, g_max, init, lr_scale, trainable, seed: as for Dense."""

    prefix = "locally_connected2d"

    def __init__(self, filters: int, kernel=(3, 3), strides=(1, 1), input_shape=None, padding: str = "valid",
                 g_min: float = 1e-7, g_max: float = 2e-5, init: str = "uniform", lr_scale: float = 1.0,
                 trainable: bool = True, seed: int | None = None, name=None):
        owner = f"LocallyConnected2D '{name}'" if name else "LocallyConnected2D"
        if not (isinstance(filters, (int, np.integer)) and filters > 0):
            raise ValueError(f"{owner}: filters={filters!r} must be a positive integer")
        self.kernel = _pair(kernel, "kernel", owner)
        self.strides = _pair(strides, "strides", owner)
        if padding not in ("valid", "same"):
            raise ValueError(f"{owner}: padding={padding!r} must be 'valid' or 'same'")
        if input_shape is None or len(input_shape) != 3 or not all(
                isinstance(a, (int, np.integer)) and a > 0 for a in input_shape):
            raise ValueError(f"{owner}: input_shape={input_shape!r} must be three positive integers (H, W, C)")
        self.input_shape = tuple(int(a) for a in input_shape)
        H, W, C = self.input_shape
        if self.kernel[0] > H or self.kernel[1] > W:
            raise ValueError(f"{owner}: kernel={list(self.kernel)} is larger than the input (H, W) = ({H}, {W})")
        self.filters, self.padding = int(filters), padding
        self.out_hw = output_hw((H, W), self.kernel, self.strides, padding)
        super().__init__(self.out_hw[0] * self.out_hw[1] * self.filters, g_min=g_min, g_max=g_max, init=init,
                         lr_scale=lr_scale, trainable=trainable, seed=seed, name=name)
        self.cols: np.ndarray | None = None
        # 'same': the zero pixels' node (V_ref), a source of this layer's own, the crossbar's last column
        self.pad_spec = NodeSpec("bias", f"{self.name}_zero", self, level=0.0) if padding == "same" else None

    @property
    def extra_inputs(self) -> tuple:
        """Source nodes the layer adds to the crossbar's columns after the wired ones."""
        return () if self.pad_spec is None else (self.pad_spec,)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (*self.out_hw, self.filters)

    @property
    def image_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def g_shape(self) -> tuple[int, int]:
        return (self.units, self.cols.shape[1]) if self.cols is not None else (self.units, 0)

    def _check_input(self, nodes: Nodes) -> None:
        super()._check_input(nodes)
        if len(nodes) < self.image_size:
            raise ValueError(f"LocallyConnected2D '{self.name}': input_shape={list(self.input_shape)} needs "
                             f"{self.image_size} image nodes, it is wired to {len(nodes)}")

    def build(self, input_size: int) -> None:
        cols = patch_columns(self.input_shape, self.kernel, self.strides, input_size - self.image_size, self.padding)
        self.cols = np.repeat(cols, self.filters, axis=0)     # rows (position, filter), row-major
        self.input_size = input_size
        self.built = True
        rng = np.random.default_rng(self.seed)
        u = rng.uniform(0.0, 1.0, size=self.g_shape)
        span = self.g_max - self.g_min
        if self.init == "glorot":
            span *= min(1.0, np.sqrt(6.0 / (self.g_shape[1] + self.filters)))
        self.G = self.g_min + span * u

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel": list(self.kernel),
                "strides": list(self.strides), "input_shape": list(self.input_shape), "padding": self.padding}


class Rearrange(Concatenate):
    """Pure wiring: the nodes of `nodes` in the order `order` (a permutation or selection
    of their indices, no node twice), e.g. to lay ± input copies out as image channels."""

    prefix = "rearrange"

    def __init__(self, order, name=None):
        super().__init__(name)
        self.order = [int(k) for k in order]

    def __call__(self, nodes) -> Nodes:  # type: ignore[override]
        if not isinstance(nodes, Nodes):
            raise TypeError(f"Rearrange '{self.name}' must be called on Nodes")
        if len(set(self.order)) != len(self.order) or not self.order or \
                min(self.order) < 0 or max(self.order) >= len(nodes):
            raise ValueError(f"Rearrange '{self.name}': order must list distinct indices in [0, {len(nodes)})")
        return Nodes([nodes.specs[k] for k in self.order], self, (nodes,))

    def get_config(self):
        return {"name": self.name, "order": list(self.order)}


def pixel_order(shape) -> list[int]:
    """Node order that lays InputVoltage(H·W·C)'s ± copies (all +, then all −) out as an
    (H, W, 2C) image: channels [+c0 … +c_{C−1}, −c0 … −c_{C−1}] at every pixel."""
    H, W, C = shape
    F = H * W * C
    pix = np.arange(F).reshape(H * W, C)
    return np.concatenate([pix, pix + F], axis=1).ravel().tolist()


def pixel_nodes(x: Nodes, shape, name: str | None = None) -> Nodes:
    """InputVoltage(H·W·C)'s nodes as an (H, W, 2C) image (see `pixel_order`)."""
    H, W, C = shape
    if len(x) != 2 * H * W * C:
        raise ValueError(f"pixel_nodes: {len(x)} input nodes cannot be an image of shape {tuple(shape)} "
                         f"with ± copies ({2 * H * W * C} nodes)")
    return Rearrange(pixel_order(shape), name=name)(x)

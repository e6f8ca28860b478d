"""Sizes that cannot fit: refused from an estimate before anything is allocated.

The native engine solves the block's circuit with a dense n × n matrix over its n free
nodes (n = inputs + hidden widths + outputs; float64), and keeps a factor of it, so it needs
at least 2 · 8 · n² bytes; the conductance matrices, their gradients and the optimiser's
two moments take 4 · 8 · Σ n_i · n_(i+1) bytes more. A block whose estimate exceeds the
machine's physical memory is refused with an error naming `analog.hidden`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import os

from pipeline.errors import SetupError

if TYPE_CHECKING:
    from pipeline.config import RootConfig

GIB = 2 ** 30


def physical_memory() -> int:
    """Bytes of physical memory (MIXSIG_MEMORY_BYTES overrides, for tests)."""
    if os.environ.get("MIXSIG_MEMORY_BYTES"):
        return int(os.environ["MIXSIG_MEMORY_BYTES"])
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def block_bytes(widths) -> int:
    """Estimated bytes of a block with layer widths [n_in, *hidden, n_out]."""
    widths = [int(w) for w in widths]
    n = sum(widths)
    edges = sum(a * b for a, b in zip(widths, widths[1:]))
    return 16 * n * n + 32 * edges


def check_block_size(hidden, n_in: int, n_out: int, what: str = "analog.hidden", bound: bool = False) -> None:
    """ValueError naming `what` if the block cannot fit in memory (`bound`: n_in, n_out are
    lower bounds)."""
    widths = [n_in, *hidden, n_out]
    need, have = block_bytes(widths), physical_memory()
    if need > have:
        shape = f"{list(hidden)} hidden" if bound else f"{n_in}→{list(hidden)}→{n_out}"
        raise SetupError(f"{what}={list(hidden)}: a {shape} analog block needs {'at least' if bound else 'about'} "
                         f"{need / GIB:.0f} GiB ({sum(widths)} circuit nodes: n×n float64 matrices), more than "
                         f"this machine's {have / GIB:.0f} GiB of memory")


def check_config(cfg: RootConfig) -> None:
    """The same check from the config alone, with the block's smallest possible inputs and
    outputs when the data do not fix them (image data: digital.embedding_dim in, 10 out)."""
    images = cfg.data.dataset == "fashion_mnist"
    n_in, n_out = (cfg.digital.embedding_dim, 10) if images else (1, 2)
    check_block_size(list(cfg.analog.hidden), n_in, n_out, bound=not images)

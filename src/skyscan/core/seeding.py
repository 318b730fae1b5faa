"""Block seeding: the unit of randomness of every simulator.

Rows are grouped in fixed blocks of :data:`BLOCK_SIZE` (blocks, not shards: a shard holds
whole blocks or parts of them, so the draws do not depend on how rows are sharded or how many
workers write them).  Each block has its own independent streams, derived from (config seed,
block index) with :class:`numpy.random.SeedSequence`.

Examples
--------
>>> rng, noise_seed = block_rng(42, 3)
>>> rng2, noise_seed2 = block_rng(42, 3)
>>> bool(rng.random() == rng2.random()) and noise_seed == noise_seed2
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK_SIZE", "block_rng", "blocks_of"]

#: Rows per random block; the unit of randomness (not of work).
BLOCK_SIZE = 250


def block_rng(seed: int, block: int) -> tuple[np.random.Generator, int]:
    """Independent random streams of one block.

    Parameters
    ----------
    seed : int
        The config's seed.
    block : int
        Block index (rows ``block * BLOCK_SIZE`` to ``(block + 1) * BLOCK_SIZE``).

    Returns
    -------
    rng : numpy.random.Generator
        The parameters' stream.
    noise_seed : int
        A 63-bit seed for a second stream (e.g. pixel noise drawn by torch's generator).
    """
    params_ss, noise_ss = np.random.SeedSequence(seed, spawn_key=(block,)).spawn(2)
    noise_seed = int(noise_ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return np.random.default_rng(params_ss), noise_seed


def blocks_of(start: int, stop: int, block_size: int = BLOCK_SIZE) -> range:
    """The indices of the blocks that rows ``[start, stop)`` touch."""
    if stop <= start:
        return range(0)
    return range(start // block_size, (stop - 1) // block_size + 1)

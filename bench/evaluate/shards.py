"""How evaluation work is split across processes: which batches this process runs, and how results meet.

Every batch of a translation or extraction is a pure function of its position (its generator is seeded
from its start index), so process `rank` of `world` runs the batches with index % world == rank and the
results are gathered back in batch order: the concatenation is exactly what one process computes alone.

The communication is Accelerate's (`gather_object`, `broadcast_object_list`); `Shards.of` wires them to
a running Accelerate state. The default, `ALONE`, is one process and calls no collective at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def _alone(items: Any) -> Any:
    return items


@dataclass(frozen=True)
class Shards:
    rank: int = 0
    world: int = 1
    # this process's list -> every process's lists concatenated in rank order (accelerate's gather_object)
    gather: Callable[[list], list] = _alone
    # the main process's object -> that object, on every process (accelerate's broadcast_object_list)
    broadcast: Callable[[Any], Any] = _alone

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def of(cls, state: Any) -> Shards:
        """The shards of an `Accelerator` (or `PartialState`): one per process."""
        if state.num_processes == 1:
            return cls()
        from accelerate.utils import broadcast_object_list, gather_object

        return cls(
            state.process_index,
            state.num_processes,
            gather_object,
            lambda value: broadcast_object_list([value])[0],
        )

    def batches(self, n: int, batch_size: int, run: Callable[[slice], Tensor]) -> Tensor:
        """`run` over consecutive batches of `n` items, concatenated in order, on every process.

        This process runs its share of the batches; each keeps the composition it has in one process, so
        networks see the same inputs whatever the number of processes."""
        if n == 0:  # nothing to share; the extractors know the shape of no features
            return run(slice(0, 0))
        batches = [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
        done = [(index, run(batch)) for index, batch in enumerate(batches) if index % self.world == self.rank]
        if self.world > 1:
            done = sorted(self.gather(done), key=lambda item: item[0])
            if [index for index, _ in done] != list(range(len(batches))):  # a lost or repeated batch: never score it
                raise RuntimeError(f"gathered batches {[index for index, _ in done]} of {len(batches)}")
        return torch.cat([out for _, out in done])


ALONE = Shards()  # one process: no collective is ever called

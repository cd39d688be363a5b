"""How many threads one model call may use in torch's intra-op pool.

A CPU replica whose model does not batch is sized by the scaler for one request at a time, and an entity
serves more requests with more replicas (docs/models.md): up to four for `Small`. If each replica's torch
also ran its default of one intra-op thread per core, four replicas on two cores would run eight threads,
and an OpenMP team waits at its barrier for its slowest thread: a thread descheduled for another replica's
stalls the whole call. So such a replica runs each torch call on one thread, and the cores are shared out
by replicas. So does a replica whose merged calls still run the model one row at a time (a transformers
text-classification pipeline): each tensor operation is one text's, too small to split across cores. A
replica whose merged calls compute many rows at once keeps torch's default (it is its entity's one busy
process), as does a GPU replica. A served entity that sets `OMP_NUM_THREADS` in its `environment_vars`
keeps what it set.
BLAS pools are left alone: numpy's level-1 routines split long sums across threads, so capping them could
change an answer's last digits against the same model served elsewhere.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping


def call_threads(environment: Mapping[str, str], device: str, wide_calls: bool) -> int | None:
    """The intra-op threads a model call may use, or None for torch's own default. `wide_calls`: one call may
    compute many rows in one tensor operation (a merged batch)."""
    if device != "cpu" or wide_calls or environment.get("OMP_NUM_THREADS"):
        return None
    return 1


def limit_call_threads(threads: int) -> bool:
    """Caps torch's intra-op pool at `threads` for the whole process, where the model imported torch;
    says whether it did."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    torch.set_num_threads(threads)
    return True

"""Token allowances of turns that opened in this process, by execution id:
set as a turn reserves (`usage.budgets`), read once as its run starts (its
usage limit), dropped as it ends (`usage.accounting`).

Public surface:
    keep(execution_id, tokens)   tokens None: no budget covers the turn
    take(execution_id) -> int | None | UNKNOWN
    forget(execution_id)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

UNKNOWN: Final = -1

#: A turn opened here may run elsewhere (a worker) and never be read here;
#: the oldest entries go, and such a turn reads its reservation from the database.
MAX_KEPT = 10_000

_allowances: OrderedDict[str, int | None] = OrderedDict()


def keep(execution_id: Any, tokens: int | None) -> None:
    _allowances[str(execution_id)] = tokens
    while len(_allowances) > MAX_KEPT:
        _allowances.popitem(last=False)


def take(execution_id: Any) -> int | None:
    """The allowance, or UNKNOWN when the turn did not open in this process."""
    return _allowances.pop(str(execution_id), UNKNOWN)


def forget(execution_id: Any) -> None:
    _allowances.pop(str(execution_id), None)

"""Running ORM code from async code.

`run_db` runs a synchronous function in a worker thread with fresh-connection
hygiene (Django's `close_old_connections` before and after, as Channels'
`database_sync_to_async` does) but on the shared thread pool rather than the
single thread-sensitive executor, so concurrent turns do not queue behind each
other's queries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def _with_fresh_connection(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def run_db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    call = functools.partial(_with_fresh_connection, fn, *args, **kwargs)
    return await sync_to_async(call, thread_sensitive=False)()


async def run_db_on(
    executor: ThreadPoolExecutor,
    fn: Callable[P, R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """`run_db` on a given executor (work that must not queue behind turns)."""
    call = functools.partial(_with_fresh_connection, fn, *args, **kwargs)
    return await sync_to_async(call, thread_sensitive=False, executor=executor)()

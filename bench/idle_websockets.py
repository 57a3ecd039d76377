"""(e) Idle websockets: resident memory per open connection on one process.

`python -m bench.idle_websockets [--backend embedded|postgres] [--size quick|full]`

Opens N authenticated websockets to one daphne process (each joined to its
session's group: one session per socket), lets them sit idle, and reads the
process's resident memory (VmRSS) before and after. Per connection is the
growth divided by N. The open-file limit is raised for this process and the
server (which inherits it). There is no pydantic-ai counterpart to compare:
the target is absolute.

Target: at most 64 KiB resident per idle websocket at 1,000 sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench.common import (
    Deployment,
    Report,
    open_backend,
    progress,
    raise_fd_limit,
    scenario,
)

NAME = "idle_websockets"
SIZES = {"quick": 1000, "full": 1000}
LIMIT_KIB = 64


async def _open_all(urls: list[str], batch: int = 100) -> list[object]:
    import websockets

    sockets: list[object] = []
    for start in range(0, len(urls), batch):
        sockets += await asyncio.gather(
            *(
                websockets.connect(url, open_timeout=60, ping_interval=None)
                for url in urls[start : start + batch]
            )
        )
    return sockets


async def _hold(live: Deployment, urls: list[str]) -> tuple[int, int, int]:
    server = live.servers[0]
    before = server.rss_bytes()
    sockets = await _open_all(urls)
    # Let allocations settle (connections finish their group joins).
    await asyncio.sleep(3)
    after = server.rss_bytes()
    # Every socket still answers: the measurement is of live connections.
    pongs = 0
    for ws in sockets[:: max(1, len(sockets) // 20)]:
        await ws.send('{"type":"ping"}')
        pongs += "pong" in await asyncio.wait_for(ws.recv(), 30)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return before, after, pongs


@scenario(NAME)
def main(args: argparse.Namespace) -> int:
    count = SIZES[args.size]
    limit = raise_fd_limit(count * 4 + 1024)
    report = Report(NAME, args.backend, {"sockets": count, "fd_limit": limit})
    with open_backend(args.backend) as backend, Deployment.start(backend) as live:
        progress(f"creating {count} sessions")
        started = time.perf_counter()
        sessions = live.create_sessions(count)
        progress(f"sessions created in {time.perf_counter() - started:.1f}s")
        urls = live.ws_urls(sessions)
        # One round of connections first, closed: warms allocator pools and
        # code paths so the measured growth is per connection, not one-off.
        asyncio.run(_hold(live, urls[:50]))
        before, after, pongs = asyncio.run(_hold(live, urls))
    per_socket = (after - before) / count
    report.table(
        f"idle websockets [{args.backend}]: {count} open sockets on one process",
        ("rss before", "rss with sockets", "growth", "per socket", "pings answered"),
        [
            (
                f"{before / 2**20:.1f} MiB",
                f"{after / 2**20:.1f} MiB",
                f"{(after - before) / 2**20:.1f} MiB",
                f"{per_socket / 1024:.1f} KiB",
                f"{pongs}",
            )
        ],
    )
    report.results = {
        "rss_before": before,
        "rss_after": after,
        "bytes_per_socket": round(per_socket),
        "pings_answered": pongs,
    }
    report.target("KiB resident per idle websocket", per_socket / 1024, LIMIT_KIB)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())

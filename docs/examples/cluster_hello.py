"""Two worker processes answer on one port; worker 1 checks both answer, then stops the cluster."""

import os
import signal
from functools import partial

import trio

from trionet import cluster, http


async def hello(req: http.Request, res: http.Response) -> None:
    await res.end(f"hello from worker {cluster.worker_id}\n".encode())


async def main() -> None:
    async with trio.open_nursery() as nursery:
        # Port 0: the primary binds it once, so every worker gets the same port.
        server = await nursery.start(partial(http.serve, hello, 0, host="127.0.0.1"))
        if cluster.worker_id == 1:
            seen: set[str] = set()
            with trio.fail_after(30):
                while len(seen) < 2:  # new connections: either worker may accept each
                    res = await http.request(f"http://127.0.0.1:{server.port}/", agent=False)
                    seen.add(res.text().strip())
            print(*sorted(seen), sep="\n")
            os.kill(os.getppid(), signal.SIGTERM)  # the primary stops every worker gracefully


cluster.run(main, workers=2)

"""Files as response bodies: opened off the event loop, sent by the kernel.

:meth:`trionet.http.Response.send_file` uses these two. ``sendfile(2)``
copies a file to a socket inside the kernel (no read into Python, no
copy back out), which is how nginx (``sendfile on``) and Node's
``http2stream.respondWithFile`` serve static files; the ASGI
``http.response.pathsend`` extension (Starlette's ``FileResponse``) maps onto
it. Over TLS the bytes must be encrypted in user space, so the caller reads
:data:`FILE_CHUNK` pieces instead.
"""

from __future__ import annotations

import os

import trio

__all__ = ["FILE_CHUNK", "open_file", "sendfile"]

#: Bytes read per piece when ``sendfile`` cannot be used (TLS): the size of
#: a Node file stream's reads (``highWaterMark`` of ``fs.createReadStream``, 64 KiB).
FILE_CHUNK = 65536

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def open_file(path: str, stat: bool) -> tuple[int, int]:
    """Open ``path`` to read; its size too if ``stat`` (one thread hop for both)."""
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        return fd, os.fstat(fd).st_size if stat else 0
    except BaseException:
        os.close(fd)
        raise


async def sendfile(sock: trio.socket.SocketType, fd: int, offset: int, count: int) -> None:
    """Copy ``count`` bytes of ``fd`` from ``offset`` to the non-blocking ``sock`` in the kernel.

    Waits for the socket when it is full, as trionet's direct I/O does
    (``trionet._fdio``), and with its two rules: the socket's descriptor is
    checked before each call (a socket closed by another task reports -1, and
    its old number may be a newer connection's), and the kernel's errors
    become ``trio.BrokenResourceError``. The file is read from the page
    cache by the kernel; rejected: ``sendfile`` in a thread, a thread hop
    per call that costs more than most files take to send.
    """
    out = sock.fileno()
    waited = False
    while count:
        if sock.fileno() != out:
            raise trio.ClosedResourceError("the socket was closed")
        try:
            sent = os.sendfile(out, fd, offset, count)
        except BlockingIOError:
            waited = True
            await trio.lowlevel.wait_writable(sock)
            continue
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        if not sent:
            raise EOFError(f"the file ended {count} bytes before the response's end")
        offset += sent
        count -= sent
    if not waited:
        await trio.lowlevel.checkpoint()

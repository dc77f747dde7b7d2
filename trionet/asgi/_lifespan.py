"""The ``lifespan`` scope: the app's startup and shutdown around the server's life.

asgiref's "Lifespan Protocol" (spec 2.0): the server calls the app once with
``{"type": "lifespan"}``; the app receives ``lifespan.startup``, answers
``lifespan.startup.complete`` (or ``.failed`` with a ``message``), later
receives ``lifespan.shutdown`` and answers ``lifespan.shutdown.complete``.
``state`` (the "Lifespan State" extension) is a dict the app fills at
startup; every request's scope gets a shallow copy of it.

``mode`` is uvicorn's ``--lifespan``: ``"on"`` requires the protocol,
``"off"`` never calls it, ``"auto"`` calls it and carries on without it if
the app raises or returns before answering startup (an app that does not
know the scope type raises; asgiref: "the server should log it and continue
without lifespan"). A ``lifespan.startup.failed`` answer always stops the
server, in every mode, with the app's message (uvicorn does the same).

The app's lifespan call runs in a task of the server's nursery under a
shielded scope: when the server is cancelled (Ctrl-C), the shutdown event
must still reach the app and be answered; after that answer, or
:data:`SHUTDOWN_TIMEOUT`, the scope is cancelled. Rejected: cancelling the
lifespan task with the rest (the app would never see its shutdown, and a
database pool opened at startup would be dropped without closing).
"""

from __future__ import annotations

import logging

import trio

from ._types import (
    LIFESPAN_SPEC_VERSION,
    ASGIApp,
    ASGIProtocolError,
    LifespanFailure,
    Message,
    asgi_info,
)

__all__ = ["LIFESPAN_MODES", "SHUTDOWN_TIMEOUT", "STARTUP_TIMEOUT", "Lifespan"]

logger = logging.getLogger("trionet.asgi.lifespan")

LIFESPAN_MODES = ("auto", "on", "off")
#: Seconds for the app to answer startup: none by default, as uvicorn (an
#: app may run migrations at startup); a caller may bound it.
STARTUP_TIMEOUT: float | None = None
#: Seconds for the app to answer shutdown once asked, then it is cancelled
#: (hypercorn's ``shutdown_timeout`` default, 60 s, is for live connections;
#: the app's own shutdown gets the same bound here).
SHUTDOWN_TIMEOUT = 60.0


class Lifespan:
    """One app's lifespan conversation: :meth:`startup`, then :meth:`shutdown`."""

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, object]) -> None:
        if mode not in LIFESPAN_MODES:
            raise ValueError(f"lifespan must be one of {LIFESPAN_MODES}, not {mode!r}")
        self.app = app
        self.mode = mode
        self.state = state
        #: Whether the app speaks the protocol (known after startup).
        self.supported = False
        self._scope = trio.CancelScope(shield=True)
        self._phase = "startup"
        self._answer: Message | None = None
        self._answered = trio.Event()
        self._shutdown = trio.Event()
        self._ended = False
        self._received = 0  # events the app got: startup, then shutdown
        self._error: BaseException | None = None

    async def startup(self, nursery: trio.Nursery, timeout: float | None = STARTUP_TIMEOUT) -> None:
        """Start the app's lifespan task and wait for its startup answer.

        Raises:
          LifespanFailure: ``lifespan.startup.failed``, or (``mode="on"``) no answer.
        """
        if self.mode == "off":
            return
        nursery.start_soon(self._run)
        with trio.fail_after(timeout if timeout is not None else float("inf")):
            await self._answered.wait()
        answer = self._answer
        if answer is None:  # the app ended or raised without answering
            if self.mode == "on":
                raise LifespanFailure(f"the app does not support lifespan: {self._error!r}")
            logger.info("ASGI 'lifespan' protocol appears unsupported: %r", self._error)
            return
        if answer["type"] == "lifespan.startup.failed":
            self._scope.cancel()
            raise LifespanFailure(answer.get("message") or "lifespan startup failed")
        self.supported = True

    async def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Send ``lifespan.shutdown`` and wait (bounded) for the answer; then end the task."""
        try:
            if not self.supported or self._ended:
                return
            self._phase = "shutdown"
            self._answer = None
            self._answered = trio.Event()
            self._shutdown.set()
            with trio.move_on_after(timeout):
                await self._answered.wait()
            answer = self._answer
            if answer is None:
                logger.error("ASGI lifespan shutdown got no answer: %r", self._error)
            elif answer["type"] == "lifespan.shutdown.failed":
                logger.error("ASGI lifespan shutdown failed: %s", answer.get("message", ""))
        finally:
            self._scope.cancel()

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": asgi_info(LIFESPAN_SPEC_VERSION),
                 "state": self.state}  # fmt: skip
        with self._scope:
            try:
                await self.app(scope, self._receive, self._send)
            except Exception as exc:
                self._error = exc
                if self.supported:  # it had started: a failure of the app
                    logger.error("ASGI lifespan task failed", exc_info=exc)
        self._ended = True
        self._answered.set()

    async def _receive(self) -> Message:
        await trio.lowlevel.checkpoint()
        if self._received == 0:
            self._received = 1
            return {"type": "lifespan.startup"}
        await self._shutdown.wait()
        if self._received >= 2:  # asked again after shutdown: nothing more will come
            await trio.sleep_forever()
        self._received = 2
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        expected = (f"lifespan.{self._phase}.complete", f"lifespan.{self._phase}.failed")
        if kind not in expected or self._answered.is_set():
            raise ASGIProtocolError(
                f"unexpected ASGI message {kind!r} during lifespan {self._phase}"
            )
        await trio.lowlevel.checkpoint()
        self._answer = message
        self._answered.set()

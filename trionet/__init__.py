"""trionet: Node.js's network programming model on Trio.

The modules mirror Node's: :mod:`trionet.net`, :mod:`trionet.dgram`,
:mod:`trionet.http`, :mod:`trionet.https`, :mod:`trionet.tls`,
:mod:`trionet.ws` and :mod:`trionet.agent`. Every server is started with
``await nursery.start(MODULE.serve, handler, port)``; a program runs with
:func:`trionet.run`, which turns Ctrl-C and SIGTERM into a graceful stop.
"""

from __future__ import annotations

from . import agent as agent
from . import dgram as dgram
from . import http as http
from . import https as https
from . import net as net
from . import tls as tls
from . import ws as ws
from ._errors import ConnectError as ConnectError
from ._errors import ConnectionLost as ConnectionLost
from ._errors import MessageSizeError as MessageSizeError
from ._errors import PoolTimeout as PoolTimeout
from ._errors import ProtocolError as ProtocolError
from ._errors import TimeoutError as TimeoutError
from ._errors import TLSError as TLSError
from ._errors import TrionetError as TrionetError
from ._run import run as run
from ._run import stop as stop
from ._run import stopping as stopping

__version__ = "0.1.0"

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "MessageSizeError",
    "PoolTimeout",
    "ProtocolError",
    "TLSError",
    "TimeoutError",
    "TrionetError",
    "agent",
    "dgram",
    "http",
    "https",
    "net",
    "run",
    "stop",
    "stopping",
    "tls",
    "ws",
]

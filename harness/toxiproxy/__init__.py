"""An embedded Toxiproxy-compatible fault proxy (HTTP API v2, Toxiproxy 2.12 semantics).

- ``python -m harness.toxiproxy --host 127.0.0.1 --port 0`` runs the server (see ``__main__``).
- :class:`harness.toxiproxy.server.ToxiproxyServer` runs it in-process on an asyncio loop.
- :func:`harness.toxiproxy.selection.start_toxiproxy` picks a Toxiproxy for the harness: the
  one at ``TOXIPROXY_URL``, else a ``toxiproxy-server`` binary on PATH, else this one as a
  subprocess; :func:`harness.toxiproxy.selection.client_for` gives a ``toxiproxy-python``
  client for any of them.

Toxics: latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, noop.
"""

from harness.toxiproxy.api import VERSION

__all__ = ["VERSION"]

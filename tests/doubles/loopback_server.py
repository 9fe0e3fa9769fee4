"""TEST DOUBLE support: the lifecycle every in-process HTTP(S) test double shares.

``LoopbackServer`` serves a ``BaseHTTPRequestHandler`` class on 127.0.0.1 (never another
address; port chosen by the kernel) in a daemon thread, optionally behind TLS, and gives the
double ``stop()``, ``url`` and use as a context manager. Used by ``fake_kube_api.FakeKubeAPI``
(the Kubernetes API) and ``delivery_api`` (the Gitea and Harbor APIs).
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class LoopbackServer(object):
    """Base of a test double that is an HTTP(S) server on 127.0.0.1; subclasses define ``start``
    (build their handler, then ``self._serve(handler, name, tls_context)`` and ``return self``)."""

    server = None
    thread = None
    scheme = "http"

    def _serve(self, handler, name, tls_context=None):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)
        self.thread.start()

    def start(self):  # pragma: no cover - every double defines its own
        raise NotImplementedError

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.server.server_address[1])

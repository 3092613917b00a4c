"""``imgclust serve``: the collection's report on a local web server, with controls to correct the
clusters (rename, move photos, merge, split, undo) in the page.

A thin layer (floor 7): each edit request is one :func:`image_clustering.pipeline.edit` call, the
very call behind ``imgclust edit``, followed by :func:`image_clustering.pipeline.report` so a reload
of the page shows the new clusters. Nothing here decides membership.

Who may talk to it (the server can change the collection, so a web page in another tab must not):
- it listens on 127.0.0.1 only;
- every URL starts with a random token (``secrets.token_urlsafe``, 128 bits) printed once; a
  request without it gets 403 (compared in constant time);
- the ``Host`` header must be ``127.0.0.1:PORT`` (defeats DNS rebinding) and an ``Origin`` header,
  when sent, ``http://127.0.0.1:PORT`` (defeats cross-site requests); edits must be
  ``application/json`` POSTs, which no HTML form can send;
- it serves only files inside the report folder and the photos of the collection, each path
  resolved (symbolic links followed) and checked to stay inside its folder.
The design follows datasette's and Jupyter's local servers (token in the URL, localhost only).
"""
from __future__ import annotations

import json
import logging
import mimetypes
import secrets
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from . import pipeline
from .config import Config
from .errors import ImgclustError
from .report_edits import collection_doc

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
EDIT_ASSETS = ("edit.js", "edit.css")  # served from the package, only by this server
MAX_BODY = 1 << 20  # bytes of an edit request: a move of many photos fits easily
OPS = {  # the edit requests and the arguments each takes (as `imgclust edit` takes them)
    "rename": {"cluster", "name"}, "move": {"photos", "cluster"}, "merge": {"into", "other"},
    "split": {"cluster", "k"}, "exclude": {"photo"}, "undo": set(),
}


def _edit_args(doc) -> tuple[str, list[dict]]:
    """The op and the ``pipeline.edit`` keyword arguments of one request (a move of several photos
    is one edit per photo, as ``imgclust edit move`` would make them).

    Raises:
        ImgclustError: a malformed request.
    """
    if not isinstance(doc, dict) or doc.get("op") not in OPS:
        raise ImgclustError(f"edit request: 'op' must be one of {', '.join(OPS)}")
    op = doc["op"]
    args = {key: doc[key] for key in OPS[op] if key in doc}
    for key in ("cluster", "into", "other"):
        if key in args and not isinstance(args[key], (str, int)):
            raise ImgclustError(f"edit request: '{key}' must be a cluster id or name")
    if op == "move":
        photos = args.get("photos")
        if not isinstance(photos, list) or not photos or not all(isinstance(p, str) for p in photos):
            raise ImgclustError("edit request: 'photos' must be a non-empty list of photo paths")
        return op, [{"photo": p, "cluster": args.get("cluster")} for p in photos]
    if op == "split":
        k = args.get("k", 2)
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise ImgclustError("edit request: 'k' must be an integer ≥ 2")
        args["k"] = k
    missing = OPS[op] - set(args) - {"k"}
    if missing:
        raise ImgclustError(f"edit request ({op}): missing {', '.join(sorted(missing))}")
    return op, [args]


class ReportServer(ThreadingHTTPServer):
    """The HTTP server of ``imgclust serve`` (stdlib ``http.server``), bound to 127.0.0.1.

    Args:
        config: the collection's config.
        port: TCP port; 0 picks a free one.

    Attributes:
        token: the URL token; ``url`` the address to open.
    """

    daemon_threads = True

    def __init__(self, config: Config, port: int = 0):
        self.config = config
        self.token = secrets.token_urlsafe(16)
        self.report_dir = (config.plot_dir / "report").resolve()
        self.image_dir = config.paths.image_dir.resolve()
        self.edit_lock = threading.Lock()  # one edit at a time (pipeline.edit also holds the collection lock)
        self._photos = set(pipeline.clusters(config).paths)  # edits never change which photos there are
        super().__init__((HOST, port), Handler)

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.origin}/{self.token}/index.html"

    def photos(self) -> set[str]:
        """The photos the page may show: those of the collection."""
        return self._photos

    def edit(self, doc) -> dict:
        """Apply one edit request through :func:`pipeline.edit`, rewrite the report and return the
        new state (:func:`~image_clustering.report_edits.collection_doc`).

        Raises:
            ImgclustError: a malformed request or one the collection refuses.
        """
        op, calls = _edit_args(doc)
        with self.edit_lock:
            lines: list[str] = []
            for args in calls:
                lines += pipeline.edit(self.config, op, **args).lines
            pipeline.report(self.config)
            return collection_doc(pipeline.clusters(self.config), lines)


class Handler(BaseHTTPRequestHandler):
    """One request: the checks of :mod:`image_clustering.server`, then a file, the state or an edit."""

    server: ReportServer
    server_version = "imgclust"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 — the stdlib's signature
        logger.debug("serve: " + format, *args)  # the URL holds the token: never to stderr by default

    # ------------------------------------------------------------ checks
    def _route(self) -> str | None:
        """The path below the token (percent-decoded, surrogate-escaped), or None after a 403."""
        s = self.server
        host_ok = self.headers.get("Host") == f"{HOST}:{s.server_address[1]}"
        origin = self.headers.get("Origin")
        origin_ok = origin is None or origin == s.origin
        parts = urlsplit(self.path).path.split("/", 2)
        token_ok = len(parts) == 3 and parts[0] == "" and secrets.compare_digest(parts[1], s.token)
        if not (host_ok and origin_ok and token_ok):
            self._send(HTTPStatus.FORBIDDEN, b"forbidden\n", "text/plain")
            return None
        return unquote_to_bytes(parts[2]).decode("utf-8", "surrogateescape")

    @staticmethod
    def _inside(root: Path, rel: str) -> Path | None:
        """``root / rel`` when it is a file inside ``root`` after resolving links, else None."""
        if not rel or "\x00" in rel or any(part in ("", ".", "..") for part in rel.split("/")):
            return None
        path = (root / rel).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None

    # ------------------------------------------------------------ answers
    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the token stays out of other sites' logs
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser stopped waiting (a page left, a load cancelled): no traceback for that

    def _json(self, status: int, doc) -> None:
        self._send(status, json.dumps(doc, ensure_ascii=True).encode(), "application/json")

    def _file(self, path: Path) -> None:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, path.read_bytes(), kind)

    def _index(self) -> None:
        """The report's page with the edit script and style added and ``fetch`` to this server allowed."""
        html = (self.server.report_dir / "index.html").read_text(encoding="utf-8")
        html = html.replace("connect-src 'none'", "connect-src 'self'")
        if 'src="edit.js' not in html:  # a report written before the edit panel existed
            tags = '<link rel="stylesheet" href="edit.css">\n<script src="edit.js"></script>\n'
            # Before the report's own script: edit.js points the photo URLs at this server first.
            at = html.find('<script src="report.js')
            at = at if at >= 0 else html.rfind("</body>")
            html = html[:at] + tags + html[at:]
        self._send(HTTPStatus.OK, html.encode(), "text/html; charset=utf-8")

    def do_GET(self):  # noqa: N802 — the stdlib's name
        rel = self._route()
        if rel is None:
            return
        try:
            if rel in ("", "index.html"):
                return self._index()
            if rel in EDIT_ASSETS:
                with resources.as_file(resources.files("image_clustering") / "report_assets" / rel) as path:
                    return self._file(path)
            if rel == "api/state":
                return self._json(HTTPStatus.OK, collection_doc(pipeline.clusters(self.server.config)))
            if rel.startswith("photos/"):
                photo = rel.removeprefix("photos/")
                path = self._inside(self.server.image_dir, photo) if photo in self.server.photos() else None
            else:
                path = self._inside(self.server.report_dir, rel)
            if path is None:
                return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            self._file(path)
        except ImgclustError as exc:
            self._json(HTTPStatus.CONFLICT, {"error": str(exc)})

    do_HEAD = do_GET

    def do_POST(self):  # noqa: N802 — the stdlib's name
        rel = self._route()
        if rel is None:
            return
        if rel != "api/edit":
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        if self.headers.get_content_type() != "application/json":
            return self._send(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, b"application/json only\n", "text/plain")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "edit request: empty or too large"})
        try:
            doc = json.loads(self.rfile.read(length))
            self._json(HTTPStatus.OK, self.server.edit(doc))
        except ValueError:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "edit request: not JSON"})
        except ImgclustError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})


def serve(config: Config, port: int = 0, open_browser: bool = True, announce=print,
          lifetime: float | None = None) -> None:
    """``imgclust serve``: (re)write the report, then serve it with its edit controls until
    interrupted (Ctrl-C) or, when ``lifetime`` seconds are given, until they pass.

    Args:
        announce: called with the URL once the server listens (the CLI prints it last).
        open_browser: open the URL in the default browser.

    Raises:
        ImgclustError: no clusters yet; OSError: the port is taken.
    """
    pipeline.clusters(config)  # fail now, with the message, when there is nothing to serve
    pipeline.report(config)
    with ReportServer(config, port) as server:
        announce(server.url)
        if open_browser:
            webbrowser.open(server.url)
        timer = threading.Timer(lifetime, server.shutdown) if lifetime else None
        if timer:
            timer.start()
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            if timer:
                timer.cancel()

"""A local stand-in for the Hugging Face Hub's API: just the endpoints huggingface_hub 2.4 calls for
`HfApi().create_repo(exist_ok=True)` and `HfApi().create_commit(...)` of small files, on 127.0.0.1.

- POST /api/repos/create                      {"name", "organization", "visibility"?} -> {"url"}
- POST /api/validate-yaml                     {"content", "repoType"} (a README.md in a commit)
- POST /api/models/{repo}/preupload/{rev}     {"files": [{path, sample, size}]} -> every file "regular"
- POST /api/models/{repo}/commit/{rev}        NDJSON: a "header" line, then {"key": "file", "value":
                                              {"path", "content" (base64), "encoding": "base64"}} lines
- GET  /api/models/{repo}                     repo_info: create_repo(exist_ok=True) asks it after a 401

Answering "regular" for every file keeps the contents inline in the commit (no LFS / xet transfer),
which is how the real Hub treats small text files. `reject` makes an endpoint answer 401, as the
Hub does for a token without write access. Every request is kept in `requests` for the tests.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USER = "tester"  # the namespace of a repo created without one


class HubStandIn:
    def __init__(self, reject: tuple[str, ...] = ()):
        self.reject = set(reject)  # endpoint names: "create", "info", "validate-yaml", "preupload", "commit"
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool | None, "files": {path: bytes}, "commits": [message]}
        self.requests: list[tuple[str, str, dict]] = []  # (endpoint name, path, headers with lower-case names)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> HubStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------------------------ endpoints

    def create(self, body: dict) -> tuple[int, dict]:
        repo_id = f"{body.get('organization') or USER}/{body['name']}"
        url = {"url": f"{self.url}/{repo_id}"}
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", **url}
        private = {"private": True, "public": False}.get(body.get("visibility"))  # None: not asked
        self.repos[repo_id] = {"private": private, "files": {}, "commits": []}
        return 200, url

    def preupload(self, repo_id: str, body: dict) -> tuple[int, dict]:
        if repo_id not in self.repos:
            return 404, {"error": "Repository not found"}
        return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                               for f in body["files"]], "commitOid": "0" * 40}

    def commit(self, repo_id: str, raw: bytes) -> tuple[int, dict]:
        if repo_id not in self.repos:
            return 404, {"error": "Repository not found"}
        repo = self.repos[repo_id]
        for line in raw.splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                repo["commits"].append(item["value"]["summary"])
            elif item["key"] == "file":
                assert item["value"]["encoding"] == "base64", item
                repo["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            else:  # an LFS file or a deletion: not part of this stand-in
                return 400, {"error": f"the stand-in does not take {item['key']!r} operations"}
        oid = f"{len(repo['commits']):040x}"
        return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}

    def answer(self, path: str, raw: bytes) -> tuple[str, int, dict]:
        if path == "/api/repos/create":
            name, handle = "create", lambda: self.create(json.loads(raw))
        elif path == "/api/validate-yaml":
            name, handle = "validate-yaml", lambda: (200, {"errors": [], "warnings": []})
        elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/[^/?]+", path):
            repo_id, name = match.groups()
            handle = (lambda: self.preupload(repo_id, json.loads(raw))) if name == "preupload" else (lambda: self.commit(repo_id, raw))
        elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path):
            repo_id, name = match.group(1), "info"
            handle = lambda: (200, {"id": repo_id, "sha": "0" * 40}) if repo_id in self.repos else (404, {"error": "Repository not found"})
        else:
            return "unknown", 404, {"error": f"the stand-in has no endpoint {path}"}
        if name in self.reject:
            return name, 401, {"error": "Invalid credentials in Authorization header"}
        return (name, *handle())

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                name, status, body = hub.answer(path, raw)
                hub.requests.append((name, path, {k.lower(): v for k, v in self.headers.items()}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # anything else gets the stand-in's 404, recorded

            def log_message(self, *args):  # quiet
                pass

        return Handler

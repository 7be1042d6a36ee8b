"""The annotation web app: FastAPI over the project database, pages and assets from `static/`.

Safety: a login sets an HttpOnly, SameSite=Strict session cookie; every state-changing request
must also carry that session's CSRF token in the `X-CSRF-Token` header (a cross-site form cannot
set a header) and a JSON body. Completions are untrusted text: the page builds its DOM with
`textContent` only, and the Content-Security-Policy below forbids inline scripts, inline styles and
any asset not served by this app (nothing is fetched from the internet). An annotator sees and
labels only their own queue; the admin role also reads `/api/admin/status`.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from posttrain.annotate import queue
from posttrain.annotate.items import token_matches
from posttrain.annotate.status import project_status
from posttrain.annotate.store import annotators, read_project, reading, sessions, writing

STATIC = Path(__file__).parent / "static"
COOKIE = "posttrain_session"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    token: str = Field(min_length=1, max_length=200)


class Label(BaseModel):
    item_id: int
    version: int
    submit_id: str = Field(min_length=1, max_length=64)
    ranking: list[int] = Field(min_length=2, max_length=64)
    comment: str = Field(default="", max_length=queue.MAX_COMMENT)


class Skip(BaseModel):
    item_id: int


def make_app(engine: Engine, lease_seconds: float = queue.LEASE_SECONDS) -> FastAPI:
    """The app for the project in `engine`'s database."""
    info = read_project(engine)
    public_project = {key: info[key] for key in ("name", "mode", "k", "overlap", "guidelines")}
    app = FastAPI(title=f"posttrain annotate: {info['name']}", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    @app.exception_handler(queue.QueueError)
    async def queue_refusal(_request: Request, exc: queue.QueueError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    def person(request: Request) -> dict:
        sid = request.cookies.get(COOKIE)
        if sid:
            with reading(engine) as conn:
                row = conn.execute(select(annotators.c.id, annotators.c.name, annotators.c.role, sessions.c.csrf)
                                   .join(sessions, sessions.c.annotator_id == annotators.c.id)
                                   .where(sessions.c.id == sid)).mappings().first()
            if row is not None:
                return dict(row, session=sid)
        raise HTTPException(401, "log in first")

    def writer(request: Request, who: dict = Depends(person)) -> dict:
        """A state-changing request: the session's CSRF token in the header, a JSON body."""
        if not secrets.compare_digest(request.headers.get("x-csrf-token", ""), who["csrf"]):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header; reload the page")
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(403, "requests must be JSON")
        return who

    def admin(who: dict = Depends(person)) -> dict:
        if who["role"] != "admin":
            raise HTTPException(403, "only an admin may see the project status")
        return who

    def page(name: str):
        return lambda: FileResponse(STATIC / name, media_type="text/html")

    for route, name in (("/", "index.html"), ("/login", "login.html"), ("/admin", "admin.html")):
        app.get(route, include_in_schema=False)(page(name))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.post("/api/login")
    def login(body: Login, response: Response):
        with reading(engine) as conn:
            row = conn.execute(select(annotators).where(annotators.c.name == body.name)).first()
        if row is None or not token_matches(body.token, row.token_hash):
            raise HTTPException(401, "unknown name or wrong token")
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with writing(engine) as conn:
            conn.execute(insert(sessions).values(id=sid, annotator_id=row.id, csrf=csrf, created_at=queue.now()))
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", max_age=30 * 24 * 3600, path="/")
        return {"name": row.name, "role": row.role, "csrf": csrf}

    @app.post("/api/logout")
    def logout(response: Response, who: dict = Depends(writer)):
        with writing(engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.id == who["session"]))
        response.delete_cookie(COOKIE, path="/")
        return {}

    @app.get("/api/me")
    def me(who: dict = Depends(person)):
        return {"name": who["name"], "role": who["role"], "csrf": who["csrf"], "project": public_project}

    @app.get("/api/next")
    def next_item(who: dict = Depends(person)):
        shown = queue.next_item(engine, who["id"], info["overlap"], lease_seconds)
        return {"item": shown.as_json() if shown else None, "progress": queue.progress(engine, who["id"], info["overlap"]),
                "can_undo": queue.can_undo(engine, who["id"])}

    @app.post("/api/label")
    def label(body: Label, who: dict = Depends(writer)):
        label_id = queue.submit_label(engine, who["id"], info["mode"], body.item_id, body.version, body.submit_id,
                                      body.ranking, body.comment)
        return {"label_id": label_id, "progress": queue.progress(engine, who["id"], info["overlap"])}

    @app.post("/api/skip")
    def skip(body: Skip, who: dict = Depends(writer)):
        queue.skip_item(engine, who["id"], body.item_id)
        return {"progress": queue.progress(engine, who["id"], info["overlap"])}

    @app.post("/api/undo")
    def undo(who: dict = Depends(writer)):
        return {"item_id": queue.undo_last(engine, who["id"])}

    @app.get("/api/admin/status")
    def status(_who: dict = Depends(admin)):
        return project_status(engine)

    return app

"""The grading web page: Starlette + Jinja2 + htmx (shipped in ``static/``, nothing loaded
from the network).

Routes::

    GET  /                 candidates in score order, one page at a time (?page=N)
    GET  /login, POST      a grader's name, kept in a cookie
    POST /grade            item, grade (0-3): stores the grade, returns the re-drawn card
    GET  /stamp/{key}.png  the PNG strip of an item (rendered once, then from the disk cache)
    GET  /stats            each grader's completeness and purity on the hidden simulations
    GET  /static/...       htmx

Keys on the page: 0-3 grade the highlighted candidate and move to the next, j/k (or the
down/up arrows) move, n/p (or right/left arrows) change page.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote

from skyscan.core.errors import UsageError
from skyscan.vet.exports import export_grades
from skyscan.vet.session import GradingSession
from skyscan.vet.store import GRADES, check_grader, grader_stats

__all__ = ["make_app", "serve", "COOKIE", "PER_PAGE"]

log = logging.getLogger(__name__)

COOKIE = "skyscan_grader"
PER_PAGE = 20
HERE = Path(__file__).parent


def _templates():
    from starlette.templating import Jinja2Templates

    return Jinja2Templates(directory=str(HERE / "templates"))


def make_app(session: GradingSession, per_page: int = PER_PAGE, export: bool = True):
    """The Starlette application of a grading session.

    Parameters
    ----------
    session : GradingSession
    per_page : int
        Candidates per page.
    export : bool
        Rewrite ``grades.parquet``, ``consensus.parquet`` and ``grader_stats.json`` after
        every grade (they then always match the database).

    Returns
    -------
    starlette.applications.Starlette
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    templates = _templates()
    items = session.items
    rank = {it.key: k + 1 for k, it in enumerate(items)}
    n_pages = max(1, -(-len(items) // per_page))

    def grader_of(request) -> str | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            return check_grader(unquote(raw))
        except UsageError:
            return None

    async def form_of(request) -> dict[str, str]:
        # URL-encoded forms only (what the page and htmx send): no multipart dependency.
        body = (await request.body()).decode("utf-8", errors="replace")
        return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}

    def card_context(item, grade):
        return {"item": item, "rank": rank[item.key], "grade": grade, "grades": GRADES}

    async def index(request):
        grader = grader_of(request)
        if grader is None:
            return RedirectResponse("/login", status_code=303)
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            return PlainTextResponse("page must be a whole number", status_code=400)
        page = min(max(page, 1), n_pages)
        shown = items[(page - 1) * per_page : page * per_page]
        mine = await run_in_threadpool(session.store.grades_of, grader)
        return templates.TemplateResponse(
            request,
            "page.html",
            {
                "grader": grader,
                "page": page,
                "n_pages": n_pages,
                "cards": [card_context(it, mine.get(it.key)) for it in shown],
                "n_items": len(items),
                "n_graded": sum(1 for k in mine if k in rank),
                "panels": session.panels,
            },
        )

    async def login(request):
        if request.method == "GET":
            return templates.TemplateResponse(request, "login.html", {"error": None})
        form = await form_of(request)
        try:
            name = check_grader(form.get("grader", ""))
        except UsageError as exc:
            return templates.TemplateResponse(
                request, "login.html", {"error": str(exc)}, status_code=400
            )
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, quote(name), max_age=365 * 86400, samesite="strict")
        return response

    async def grade(request):
        grader = grader_of(request)
        if grader is None:
            return PlainTextResponse("enter your name first (/login)", status_code=401)
        form = await form_of(request)
        key = form.get("item", "")
        item = session.by_key.get(key)
        if item is None:
            return PlainTextResponse(f"unknown item {key!r}", status_code=404)
        try:
            value = int(form.get("grade", ""))
            await run_in_threadpool(session.store.set_grade, grader, key, value)
        except (ValueError, UsageError):
            return PlainTextResponse("grade must be 0, 1, 2 or 3", status_code=400)
        if export:
            await run_in_threadpool(
                export_grades, session.store, session.sources.candidates, session.sources.results
            )
        mine = await run_in_threadpool(session.store.grades_of, grader)
        context = card_context(item, value)
        context.update(n_graded=sum(1 for k in mine if k in rank), n_items=len(items), oob=True)
        return templates.TemplateResponse(request, "card.html", context)

    async def stamp(request):
        key = request.path_params["key"]
        if key not in session.by_key:
            return PlainTextResponse("unknown item", status_code=404)
        path = await run_in_threadpool(session.png, key)
        return FileResponse(
            path, media_type="image/png", headers={"Cache-Control": "max-age=86400"}
        )

    async def stats(request):
        rows = await run_in_threadpool(session.store.all_grades)
        return templates.TemplateResponse(
            request, "stats.html", {"stats": grader_stats(rows), "grader": grader_of(request)}
        )

    routes = [
        Route("/", index),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/grade", grade, methods=["POST"]),
        Route("/stamp/{key}.png", stamp),
        Route("/stats", stats),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes)


def serve(app, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve ``app`` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")

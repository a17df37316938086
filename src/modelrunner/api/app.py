"""The FastAPI application: routes under /api/v1, health and metrics, the web UI's pages, the
platform's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

import modelrunner
from modelrunner.api import API_PREFIX
from modelrunner.api.accounts_routes import router as accounts_router
from modelrunner.api.attempt_outputs_routes import router as attempt_outputs_router
from modelrunner.api.attempts_routes import append_log
from modelrunner.api.attempts_routes import router as attempts_router
from modelrunner.api.backends_routes import router as backends_router
from modelrunner.api.body_limits import BodyLimit, BodyLimits
from modelrunner.api.dataset_files_routes import change_dataset, put_dataset_file
from modelrunner.api.dataset_files_routes import router as dataset_files_router
from modelrunner.api.datasets_routes import router as datasets_router
from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.api.errors import install_error_handlers
from modelrunner.api.export_routes import router as export_router
from modelrunner.api.models_routes import router as models_router
from modelrunner.api.notify_routes import router as notify_router
from modelrunner.api.runs_routes import router as runs_router
from modelrunner.api.schedules_routes import router as schedules_router
from modelrunner.api.schemas import Health
from modelrunner.api.uploads_routes import router as uploads_router
from modelrunner.api.uploads_routes import submit_with_files
from modelrunner.api.url_text import RefuseNulInUrl
from modelrunner.api.workers_routes import put_file
from modelrunner.api.workers_routes import router as workers_router
from modelrunner.platform import Platform
from modelrunner.web.admin_pages import router as admin_pages_router
from modelrunner.web.dataset_pages import put_files as put_files_page
from modelrunner.web.dataset_pages import router as dataset_pages_router
from modelrunner.web.output_files import router as output_files_router
from modelrunner.web.pages import router as pages_router
from modelrunner.web.pages import submit_run as submit_run_page
from modelrunner.web.pipeline_graph import router as pipeline_graph_router
from modelrunner.web.rendering import STATIC
from modelrunner.web.result_pages import router as result_pages_router
from modelrunner.web.run_lists import router as run_lists_router
from modelrunner.web.run_pages import router as run_pages_router
from modelrunner.web.session import SessionCookies
from modelrunner.web.subscription_pages import router as subscription_pages_router

health_router = APIRouter(tags=["health"])


@health_router.get("/healthz", response_model=Health, summary="Liveness: the server answers and its store works")
def healthz(platform: PlatformDep) -> Health:
    """Open to everyone (load balancers and probes carry no token); it tells nothing but "ok"."""
    platform.database.ping()
    return Health(status="ok")


@health_router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(platform: PlatformDep, access: AccessDep) -> Response:
    """For any signed-in user (give the scraper a token of a user of its own)."""
    access.require_signed_in("reading metrics")
    return Response(platform.metrics.render(), media_type="text/plain; version=0.0.4")


def create_app(platform: Platform) -> FastAPI:
    """The app around ``platform``; the platform starts and stops with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(platform.start)
        try:
            yield
        finally:
            await run_in_threadpool(platform.stop)

    app = FastAPI(
        title="modelrunner",
        version=modelrunner.__version__,
        description="Run scientific models on demand with typed parameters; identical requests are computed once.",
        lifespan=lifespan,
    )
    app.state.platform = platform
    install_error_handlers(app)
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(models_router)
    api.include_router(uploads_router)
    api.include_router(runs_router)
    api.include_router(attempt_outputs_router)
    api.include_router(datasets_router)
    api.include_router(dataset_files_router)
    api.include_router(schedules_router)
    api.include_router(backends_router)
    api.include_router(export_router)
    api.include_router(notify_router)
    api.include_router(accounts_router)
    api.include_router(attempts_router)
    api.include_router(workers_router)
    api.include_router(health_router)
    app.include_router(api)
    # The web UI: pages signed in by a session cookie (the API itself only reads bearer tokens).
    app.add_middleware(SessionCookies, settings=platform.settings)
    app.include_router(pages_router)
    app.include_router(run_lists_router)
    app.include_router(output_files_router)
    app.include_router(run_pages_router)
    app.include_router(pipeline_graph_router)
    app.include_router(result_pages_router)
    app.include_router(dataset_pages_router)
    app.include_router(admin_pages_router)
    app.include_router(subscription_pages_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    settings = platform.settings
    app.add_middleware(
        BodyLimits,
        default=BodyLimit("max_body_bytes", settings.max_body_bytes),
        larger={
            put_file: BodyLimit("max_upload_bytes", settings.max_upload_bytes),
            submit_with_files: BodyLimit("max_upload_bytes", settings.max_upload_bytes),
            put_dataset_file: BodyLimit("max_upload_bytes", settings.max_upload_bytes),
            change_dataset: BodyLimit("max_upload_bytes", settings.max_upload_bytes),
            submit_run_page: BodyLimit("max_upload_bytes", settings.max_upload_bytes),
            put_files_page: BodyLimit("max_upload_bytes", settings.max_upload_bytes),
            append_log: BodyLimit("max_log_append_bytes", settings.max_log_append_bytes),
        },
    )
    app.add_middleware(RefuseNulInUrl)
    return app

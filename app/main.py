"""The FastAPI application: `app.main:app`, served by uvicorn.

`create_app` wires routes and error handlers; the container (engine, Redis client,
SMS provider, rate limiter) is built in the lifespan from the environment, or by
the `container_factory` a test passes, so importing this module connects nowhere.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Optional

from fastapi import FastAPI

from app import __version__, errors
from app.config import Settings
from app.container import Container
from app.routes import health, verifications

logger = logging.getLogger("app")

ContainerFactory = Callable[[], Container]


def default_container() -> Container:
    return Container.from_settings(Settings.from_env())


def create_app(container_factory: Optional[ContainerFactory] = None) -> FastAPI:
    factory = container_factory or default_container

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logger.setLevel(logging.INFO)
        container = factory()
        app.state.container = container
        settings = container.settings
        logger.info(
            "namaskah verification service %s (commit %s, env %s, sms provider %s) starting",
            __version__,
            settings.git_commit,
            settings.environment,
            settings.sms_provider,
        )
        try:
            yield
        finally:
            container.close()

    app = FastAPI(
        title="Namaskah SMS verification API",
        version=__version__,
        description="Send a 6-digit code by SMS and check it.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(verifications.router)
    return app


app = create_app()

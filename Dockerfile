# Namaskah SMS verification service: multi-stage image, uvicorn as a non-root user.
#
#   docker build -t namaskah-app .
#   docker build --build-arg BASE_IMAGE=namaskah-ci/base:bookworm -t namaskah-app .
#
# BASE_IMAGE: the official python:3.11-slim by default, or any Debian image; one without
# python3 (e.g. a debootstrap minbase) gets Debian's python3 and python3-venv from apt.
# Extra CA bundle for pip (TLS-inspecting proxy, private index), used in the build stage
# only and never copied into the final image, either way:
#   - put the PEM bundle in the build context as `pip-ca.crt`, or
#   - --build-arg PIP_CERT=/path/inside/the/base/image.pem
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS python-base
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN set -eu; \
    if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update -q; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv; \
        apt-get clean; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -c "import sys; assert sys.version_info >= (3, 9), sys.version"

FROM python-base AS build
ARG PIP_CERT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1 \
    PIP_DEFAULT_TIMEOUT=120
WORKDIR /build
# `pip-ca.cr[t]` copies the optional CA bundle when the context has one and nothing otherwise.
COPY requirements.txt pip-ca.cr[t] ./
RUN set -eu; \
    if [ -s /build/pip-ca.crt ]; then PIP_CERT=/build/pip-ca.crt; fi; \
    if [ -n "${PIP_CERT}" ] && [ ! -s "${PIP_CERT}" ]; then \
        echo "PIP_CERT=${PIP_CERT} is not a file in the build stage; using the default CA bundle" >&2; PIP_CERT=""; \
    fi; \
    if [ -n "${PIP_CERT}" ]; then export PIP_CERT; else unset PIP_CERT; fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/python -m pip install -q --upgrade pip; \
    /opt/venv/bin/python -m pip install --require-virtualenv -r requirements.txt; \
    /opt/venv/bin/python -m pip uninstall -q -y pip; \
    find /opt/venv -name '__pycache__' -prune -exec rm -rf '{}' +

FROM python-base AS runtime
ARG APP_UID=10001
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PORT=8000 \
    APP_ENV=production
RUN set -eu; \
    groupadd --system --gid "${APP_UID}" app; \
    useradd --system --uid "${APP_UID}" --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY alembic.ini ./
COPY app ./app
COPY migrations ./migrations
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
# PORT comes from the platform (Render sets it). Migrations run apart from the server:
# `alembic upgrade head` as the pre-deploy command, with the same image and DATABASE_URL.
CMD ["sh", "-c", "exec uvicorn app.main:app --host 0.0.0.0 --port \"${PORT}\" --proxy-headers --no-server-header"]

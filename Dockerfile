# syntax=docker/dockerfile:1
# davpush in a container (README: Run in a container). The image runs `davpush web` on $PORT
# (8000) by default; `davpush worker` is the other command. Settings come from the environment.
# The wheels are built and installed by tools/build-wheels.sh and tools/install-wheels.sh, the
# scripts tests/test_packaging.py runs in CI: the image installs what CI has installed and run.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml requirements.txt README.md ./
COPY app/ app/
COPY tools/build-wheels.sh tools/
RUN --mount=type=cache,target=/root/.cache/pip sh tools/build-wheels.sh /wheels

FROM python:3.11-slim
RUN --mount=type=bind,from=build,source=/wheels,target=/tmp/wheels \
    --mount=type=bind,source=tools/install-wheels.sh,target=/tmp/install-wheels.sh \
    --mount=type=cache,target=/root/.cache/pip \
    sh /tmp/install-wheels.sh /tmp/wheels /opt/davpush \
    && useradd --system --user-group --uid 10001 --home-dir /var/lib/davpush --create-home \
       --shell /usr/sbin/nologin davpush
ENV PATH=/opt/davpush/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BIND_HOST=0.0.0.0 \
    PORT=8000
USER 10001:10001
WORKDIR /var/lib/davpush
EXPOSE 8000
# Liveness only (/push/livez touches neither Redis nor Nextcloud); a worker container has no
# HTTP server: turn the check off there (compose.yaml does).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/davpush/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/push/livez' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["davpush", "web"]

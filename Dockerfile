# CozyEngine: offline-capable image (models come from PyPI wheels; nothing is fetched at run time).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock pyproject.toml README.md Makefile ./
COPY scripts ./scripts
COPY cozy_core ./cozy_core
COPY cozy_actors ./cozy_actors
COPY cozy_media ./cozy_media
COPY cozy_http ./cozy_http
RUN scripts/install.sh

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home cozy
WORKDIR /app
COPY --from=build /app /app
COPY config ./config
COPY personalities ./personalities
USER cozy
ENV COZY_HOST=0.0.0.0 COZY_PORT=8000 COZY_DATA_DIR=/home/cozy/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/health'); sys.exit(0)"
CMD [".venv/bin/cozy", "serve"]

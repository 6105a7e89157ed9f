# Production image of the ppatch registry: `ppatch[server]` only, so no torch, no model code.
# Build:  docker build -t ppatch-registry .
# Run:    docker run -p 8080:8080 -v ppatch-data:/var/lib/ppatch-registry ppatch-registry
# Scale out by setting PPATCH_REGISTRY_DATABASE_URL (PostgreSQL) and PPATCH_REGISTRY_STORAGE
# (s3://bucket/prefix) and running several containers; see docs/registry.md.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY patchfmt ./patchfmt
COPY registry_server ./registry_server
COPY client ./client
# Wheels for the project and every dependency of the server extra, built once here so the
# runtime stage installs offline and carries no compiler or pip cache.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[server]"

FROM python:3.11-slim
RUN groupadd --system --gid 10001 ppatch \
    && useradd --system --uid 10001 --gid ppatch --home-dir /var/lib/ppatch-registry --create-home ppatch
COPY --from=build /wheels /wheels
# /wheels holds exactly the versions built above, so the install is pinned by construction.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --find-links /wheels "ppatch[server]" && rm -rf /wheels

ENV PPATCH_REGISTRY_HOME=/var/lib/ppatch-registry \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/ppatch-registry"]
USER 10001:10001
WORKDIR /var/lib/ppatch-registry
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["ppatch-registry"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]

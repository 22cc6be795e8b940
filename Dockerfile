# flagedge: the flag-evaluation edge (gRPC: flagedge.v1 + flagd evaluation v1/v2; HTTP: OFREP).
#   docker build -t flagedge .
#   docker run -p 8013:8013 -p 8014:8014 -p 8016:8016 -v $PWD/flags.json:/flags/flags.json \
#       flagedge serve --flags /flags/flags.json
# Without --flags it serves the bundled example set.

FROM python:3.11-slim AS build
# A C compiler for flagedge's optional speed-ups (src/flagedge/_speedups.c); build stage only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/flagedge
# What the build reads: pyproject.toml (metadata), setup.py (the optional C extension),
# LICENSE (license-files) and README.md (the long description).
COPY pyproject.toml setup.py LICENSE README.md ./
COPY src ./src
RUN /opt/flagedge/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin flagedge
COPY --from=build /opt/flagedge /opt/flagedge
ENV PATH=/opt/flagedge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLAGEDGE_HOST=0.0.0.0 \
    FLAGEDGE_PORT=8013 \
    FLAGEDGE_MANAGEMENT_PORT=8014 \
    FLAGEDGE_OFREP_PORT=8016
USER 10001:10001
EXPOSE 8013 8014 8016
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FLAGEDGE_MANAGEMENT_PORT', '8014') + '/healthz', timeout=2)"]
# SIGTERM drains in-flight calls (FLAGEDGE_GRACE seconds), then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["flagedge"]
CMD ["serve"]

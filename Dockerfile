# syntax=docker/dockerfile:1
# The ECM pipeline's image: the code server of the `ecm_pipeline` code location, and the image every
# run worker (a Kubernetes Job, an ECS task) starts from. See deploy/README.md.
#
#   docker build -t ecm-pipeline:$(git rev-parse --short HEAD) .
#   docker build --build-arg DAGSTER_YAML=deploy/ecs/dagster.yaml -t ecm-pipeline:<sha>-ecs .   # ECS

# --- the project as a wheel --------------------------------------------------------------------------
# A real (non-editable) wheel: sql/ and expectations/ go in as the packages ecm_pipeline.sql and
# ecm_pipeline.expectations ([tool.setuptools.package-dir] in pyproject.toml), so nothing is read
# from a source tree at run time.
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
RUN pip install --no-cache-dir --disable-pip-version-check "setuptools>=77" wheel
COPY pyproject.toml README.md ./
COPY ecm_pipeline ./ecm_pipeline
COPY sql ./sql
COPY expectations ./expectations
RUN pip wheel --no-deps --no-build-isolation --no-cache-dir --disable-pip-version-check -w /dist .

# --- the image ---------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

# DAGSTER_HOME: the Helm chart mounts its instance config here (its global.dagsterHome); ECS and
# plain Docker use the file baked in below. ECM_HOME: where `ecm` keeps local state for an
# integration that is not configured (SPEC §2); in production every one is, and nothing lands there.
# DAGSTER_GRPC_SHUTDOWN_GRACE_PERIOD: on SIGTERM the code server waits this long for calls in flight
# (Dagster's default is its 60 s call timeout), so it always exits within Kubernetes' 30 s grace.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    ECM_HOME=/opt/dagster/ecm \
    DAGSTER_GRPC_SHUTDOWN_GRACE_PERIOD=15

# tini as PID 1: it passes a stop signal on to every process of the container (with the default
# launcher, runs are child processes of the code server) and reaps the ones that exit.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv "$VIRTUAL_ENV" \
    && useradd --create-home --uid 10001 --user-group ecm \
    && mkdir -p /opt/dagster/app "$DAGSTER_HOME" "$ECM_HOME" \
    && chown -R ecm:ecm /opt/dagster

# The dependencies first, from pyproject.toml alone: this layer is rebuilt only when the dependency
# list changes, not on every code change.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt /tmp/pyproject.toml

# Then the project, without touching the dependencies installed above.
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist \
    pip install --no-deps /dist/*.whl

# The instance config (Postgres, the run queue and its limits, run monitoring): deploy/dagster.yaml,
# or the ECS variant with its run launcher. Baked in, so `ecm` never seeds a local SQLite instance.
ARG DAGSTER_YAML=deploy/dagster.yaml
COPY --chown=ecm:ecm ${DAGSTER_YAML} /opt/dagster/dagster_home/dagster.yaml
COPY --chown=ecm:ecm deploy/workspace.yaml /opt/dagster/dagster_home/workspace.yaml

USER ecm
# An empty working directory: `dagster` puts it on sys.path, and nothing there may shadow the
# installed package.
WORKDIR /opt/dagster/app
EXPOSE 4000

HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]

# Only tini as ENTRYPOINT: the launchers and the Helm chart replace CMD with their own command
# (`dagster api execute_run ...`, `dagster api grpc ...`), which runs under tini unchanged. CMD is
# what the Helm chart runs too (dagsterApiGrpcArgs): one process serving the code location, which
# stops cleanly on SIGTERM. (`dagster code-server start` would add a proxy process that can reload
# code in place; a release here is a new image, so there is nothing to reload.)
ENTRYPOINT ["tini", "-g", "--"]
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "ecm_pipeline.definitions", "--location-name", "ecm_pipeline"]

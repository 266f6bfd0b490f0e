# syntax=docker/dockerfile:1
# The swarm-arena operator image: `swarm-arena operator` on a slim Python, as a non-root user.
#   docker build -f images/operator.Dockerfile -t ghcr.io/swarm-arena/swarm-arena-operator:0.1.0 .
# (build context: the repository root). The chart runs it with a read-only root filesystem.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
# The package without its arena dependencies (Ray, PettingZoo, ...): the operator imports only
# swarm_arena.api and swarm_arena.controller, whose needs are in operator-requirements.txt.
COPY images/operator-requirements.txt /src/
RUN python -m venv /opt/swarm-arena \
    && /opt/swarm-arena/bin/pip install --no-cache-dir -r /src/operator-requirements.txt
COPY pyproject.toml README.md /src/
COPY operator /src/operator
RUN /opt/swarm-arena/bin/pip install --no-cache-dir --no-deps /src

FROM python:${PYTHON_VERSION}-slim-bookworm
LABEL org.opencontainers.image.title="swarm-arena-operator" \
      org.opencontainers.image.description="Runs SwarmEvaluations on KubeRay RayClusters" \
      org.opencontainers.image.source="https://github.com/swarm-arena/swarm-arena" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/swarm-arena /opt/swarm-arena
ENV PATH=/opt/swarm-arena/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the conventional "nonroot" uid; the chart's podSecurityContext uses the same.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["swarm-arena"]
CMD ["operator", "--all-namespaces"]

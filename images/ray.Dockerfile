# syntax=docker/dockerfile:1
# The Ray image SwarmEvaluations run on by default: the swarm-arena package on the official Ray
# image of the matching release. Its tag is what `cluster.image` defaults to:
#   ghcr.io/swarm-arena/swarm-arena-ray:<package version>-ray<RAY_VERSION>
#   docker build -f images/ray.Dockerfile -t ghcr.io/swarm-arena/swarm-arena-ray:0.1.0-ray2.60.0 .
# RAY_VERSION must equal swarm_arena.api.spec.RAY_VERSION and pyproject's ray pin (a test checks);
# Python 3.11 matches the package's requires-python and the operator image.
ARG RAY_VERSION=2.60.0
FROM rayproject/ray:${RAY_VERSION}-py311

LABEL org.opencontainers.image.title="swarm-arena-ray" \
      org.opencontainers.image.description="Ray with the swarm-arena runtime and the examples' environments" \
      org.opencontainers.image.source="https://github.com/swarm-arena/swarm-arena" \
      org.opencontainers.image.licenses="Apache-2.0"

# The base image's user (`ray`, uid 1000, group `users`, gid 100) owns its Python environment;
# install as that user.
USER 1000:100
COPY --chown=1000:100 pyproject.toml README.md /tmp/swarm-arena/
COPY --chown=1000:100 operator /tmp/swarm-arena/operator
# The `examples` extra brings the environments the shipped examples use (MAgent2, SISL), so
# the examples run on this image as they are; others bring theirs through spec.runtimeEnv.pip.
# The `s3` extra brings pyarrow, which checkpoint.storageURI needs for s3:// and gs://.
RUN pip install --no-cache-dir "/tmp/swarm-arena[examples,s3,recording]" \
    && rm -rf /tmp/swarm-arena
WORKDIR /home/ray

# The two commands a new user needs (see README):
#   make demo   set up, then run a real evaluation on an embedded local Ray
#   make test   set up, build the test control plane and the images if missing (cached), run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test controlplane bench crd images images-archive

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "swarm-arena needs Python >= 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[test]'
	@touch $@

demo: setup
	$(BIN)/swarm-arena run manifests/examples/foraging-local.yaml --output results.json --plot leaderboard.png \
		--record recordings
	$(BIN)/swarm-arena render recordings --episode 0 --video foraging.gif --every 2

# The control plane (Go builds, CPU) and the images (downloads, file copies) build side by side;
# both are cached by content, so a warm run passes through in seconds.
test: setup
	$(BIN)/python images/build.py --tools-only
	@$(BIN)/python -m tests.controlplane build & plane=$$!; \
	$(BIN)/python images/build.py; images=$$?; \
	wait $$plane; plane=$$?; \
	if [ $$plane != 0 ] || [ $$images != 0 ]; then \
	  echo "make test: $$([ $$plane != 0 ] && echo 'the control plane build') $$([ $$images != 0 ] && echo 'make images') failed (see above)"; exit 1; fi
	$(BIN)/python -m pytest

controlplane: setup
	$(BIN)/python -m tests.controlplane up --process-nodes 2 --process-gpu-nodes 1

bench: setup
	$(BIN)/python benchmarks/arena_step.py --agents 100,1000,10000 --shards 1,2,4 --steps 200 --repeats 3 \
		--profile --plot docs/performance-arena-step.png
	$(BIN)/python benchmarks/arena_step.py --runs --steps 200 --repeats 3 --plot docs/performance-arena-runs.png
	$(BIN)/python benchmarks/step_breakdown.py --steps 200 --repeats 3 --py-spy

# Both images with buildah (no container daemon; stand-in bases where no registry answers), cached
# by content; images-archive also writes archives for `docker load` / `kind load image-archive`.
images: setup
	$(BIN)/python images/build.py

images-archive: setup
	$(BIN)/python images/build.py --archive dist/images

crd: setup
	$(BIN)/swarm-arena crd > crds/arena.swarm.dev_swarmevaluations.yaml
	cp crds/arena.swarm.dev_swarmevaluations.yaml helm/swarm-arena-operator/crds/
	cp crds/arena.swarm.dev_swarmevaluations.yaml manifests/base/crd.yaml

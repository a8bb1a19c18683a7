# tfcodec: `make demo` sets everything up and runs the codec on valid/;
# `make test` runs the test suite; `make rd` regenerates RDdata/ (Kodak RD
# curves of the shipped models and the classical baselines); `make fuzz` and
# `make determinism` are the long reliability runs (README "Reliability").
# All build .venv on first use.

PYTHON ?= $(shell command -v python3.11 || echo none)
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-all rd fuzz determinism venv clean

$(VENV)/.installed: requirements.txt pyproject.toml
	@if [ "$(PYTHON)" = "none" ]; then \
	  echo "error: tfcodec needs Python 3.11 (tensorflow-compression 2.14.1 supports no newer Python); install python3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	  { echo "error: $(PYTHON) is not Python 3.11; run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) encoder.py --input_dir valid --output_dir bitstreams
	$(PY) decoder.py --input_dir bitstreams --output_dir reconstructions --reference_dir valid

# make test leaves out tests marked slow: further instances of checks it
# already makes (every shipped weight file, every model's SavedModel); make
# test-all runs everything.
test: venv
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 -m "not slow" tests

test-all: venv
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

# Measures every shipped weight and every baseline on Kodak (../shared/data/kodak)
# and rewrites RDdata/ from the results; prints how long it took.
rd: venv
	$(PY) -m pip install -q -r requirements-rd.txt
	@start=$$(date +%s); \
	$(PY) -m tfcodec.eval --rddata RDdata --fresh && \
	echo "make rd: $$(( $$(date +%s) - start )) s"

# Mutation-fuzzes the decoder with 10,000 cases over every registered model;
# prints clean errors, decodes, uncaught exceptions, crashes and hangs.
FUZZ_CASES ?= 10000
fuzz: venv
	$(PY) -m tfcodec.fuzz --cases $(FUZZ_CASES) --save_dir fuzz-failures

# Encodes and decodes all of Kodak with every shipped weight under intra-op
# threads 1/2/4 x TF_ENABLE_ONEDNN_OPTS 0/1; prints every mismatch.
determinism: venv
	$(PY) -m tfcodec.determinism

clean:
	rm -rf bitstreams reconstructions

# Every target installs what it needs into .venv/ on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: install plan quickstart es-mnist cross-dataset la-cloning invariances introspection omniglot test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# libtpu (~680 MB, the pin of pyproject's tpu extra) for benchmarks.plan and its test, in a
# folder of its own: on a machine without a TPU, every JAX process that can import libtpu
# prints its start-up warnings, so it stays off the path of the other commands
LIBTPU := $(VENV)/libtpu
$(LIBTPU)/.stamp: $(STAMP)
	$(PY) -m pip install -q --target $(LIBTPU) "libtpu==0.0.42.*"
	touch $@

install: $(STAMP)

quickstart: $(STAMP)  ## CPU-sized VSML meta-training on MNIST (minutes on 2 cores)
	$(PY) -m experiments.es_mnist --config experiments/es_mnist/configs/quickstart.yaml $(ARGS)

es-mnist: $(STAMP)    ## paper Section 4.2 scale; e.g. ARGS="--set es.population_pairs=128"
	$(PY) -m experiments.es_mnist $(ARGS)

cross-dataset: $(STAMP)  ## paper Section 4.4: meta-train on some datasets, test on unseen ones
	$(PY) -m experiments.cross_dataset $(ARGS)

la-cloning: $(STAMP)  ## paper Section 4.1: clone backprop into VSML at 784 inputs, meta-test it against SGD
	$(PY) -m experiments.la_cloning $(ARGS)

invariances: $(STAMP)  ## paper Section 4.3: one V_M on unseen class counts, input sizes, projections
	$(PY) -m experiments.invariances $(ARGS)

introspection: $(STAMP)  ## paper Section 5: class-probability heat maps and fast association
	$(PY) -m experiments.introspection $(ARGS)

omniglot: $(STAMP)    ## Omniglot few-shot with dense and conv VSML against MAML, 1-NN, NCM
	$(PY) -m experiments.omniglot $(ARGS)

TOPOLOGY ?= v5e:4x4
plan: $(LIBTPU)/.stamp  ## TPU pod plan without a TPU; e.g. TOPOLOGY=v5e:2x2 ARGS="--num-slices 2"
	PYTHONPATH=$(LIBTPU) $(PY) -m benchmarks.plan --config experiments/es_mnist/configs/es_mnist.yaml --topology $(TOPOLOGY) $(ARGS)

test: $(STAMP) $(LIBTPU)/.stamp
	VSML_LIBTPU_DIR=$(LIBTPU) $(PY) -m pytest -q -n auto --dist worksteal $(ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.bench $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check vsml_jax experiments tests benchmarks
	$(PY) -m ruff format --check vsml_jax experiments tests benchmarks

clean:
	rm -rf $(VENV) .cache .pytest_cache

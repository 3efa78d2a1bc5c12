# RadAI: `make demo` sets everything up and runs the demo; `make test` sets up and runs the tests.
VENV ?= .venv
PYTHON = $(VENV)/bin/python
DEMO_OUT ?= radai-demo

.PHONY: setup demo test benchmarks clean

setup: $(VENV)/.radai-installed

$(VENV)/.radai-installed: pyproject.toml .ci/setup
	bash .ci/setup $(VENV)
	touch $@

demo: setup
	$(VENV)/bin/radai demo --out $(DEMO_OUT)

test: setup
	$(PYTHON) -m pytest Testing -q -p no:cacheprovider

benchmarks: setup
	$(PYTHON) benchmarks/inference.py
	$(PYTHON) benchmarks/volumetrics.py

clean:
	rm -rf $(VENV) $(DEMO_OUT)

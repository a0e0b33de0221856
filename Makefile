# Two commands on a fresh machine (Python >= 3.10 and make):
#   make demo   # set up .venv and refine the embedded sample -> climgen-demo/*.nc, *.png
#   make test   # set up .venv (with test extras) and run the test suite
#   make docs   # build the documentation site offline into site/ (warnings fail it)
#   make benchmarks  # every figure of docs/benchmarks.md (QUICK=1: a smaller run, into build/benchmarks-quick)
#   make gallery     # the pictures of docs/gallery.md
# SHARED is the folder with the real fields (data/corpus, data/ncl) the benchmarks use.
# TORCH pins the build installed first; any torch >= 2.13 works with climgen.
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTHON ?= python3
PY := $(VENV)/bin/python
SHARED ?= ../shared

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)" -e ".[test]"
	touch $@

# cfchecks (a test dependency) needs the udunits2 C library; install it where we can.
udunits:
	@ldconfig -p 2>/dev/null | grep -q libudunits2 || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq >/dev/null && apt-get install -y -qq libudunits2-0 >/dev/null) || \
	    echo "note: install libudunits2 (Debian: libudunits2-0) for the cfchecks tests"; }

demo: $(VENV)/.installed
	$(VENV)/bin/climgen demo --out climgen-demo

test: $(VENV)/.installed udunits
	$(PY) -m pytest -q

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(VENV)/bin/mkdocs build --strict --quiet

benchmarks: $(VENV)/.installed
	$(PY) benchmarks/report.py --shared $(SHARED) $(if $(QUICK),--quick)

gallery: $(VENV)/.installed
	$(PY) docs/make_gallery.py --shared $(SHARED)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check climgen tests benchmarks docs recipes
	$(VENV)/bin/ruff format --check climgen tests benchmarks docs recipes

.PHONY: demo test docs lint udunits benchmarks gallery

# neurodiff: the two commands a newcomer needs are `make report` and `make test`.
#   make report                 set-up + demo cohort + all notebooks (demo profile) + the book
#   make report PROFILE=smoke   the same in seconds; PROFILE=paper needs a GPU
#   make report TORCH=torch     any torch requirement instead of the CPU pin (e.g. a CUDA build)
#   make report LOCK=none       the version ranges of pyproject.toml instead of requirements.lock
#   make test                   ruff check, ruff format --check, pytest
#   make lock                   refresh requirements.lock from the installed environment
#   make dist                   the wheel and the sdist in dist/ (python -m build)

PYTHON  ?= python3
VENV    ?= .venv
TORCH   ?= torch==2.13.0
LOCK    ?= requirements.lock
PROFILE ?= demo
ARGS    ?=
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO    := data/raw/demo-pools/dataset_description.json

.PHONY: help install lock data notebooks run book report test lint format benchmark lab dist clean distclean

help:
	@sed -n '1,10p' Makefile

install: $(STAMP)

# The exact versions that built the published book (requirements.lock), torch as $(TORCH).
$(STAMP): pyproject.toml $(wildcard $(LOCK))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
ifeq ($(LOCK),none)
	$(BIN)/python -m pip install -q -e ".[dev]"
else
	grep -v '^torch==' $(LOCK) | $(BIN)/python -m pip install -q -r /dev/stdin
	$(BIN)/python -m pip install -q --no-deps -e .
endif
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lock: | $(STAMP)
	{ echo "# Exact versions of every package that builds the book (make lock; make install uses it)."; \
	  echo "# torch is the CPU build; make install TORCH=... installs another in its place."; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; \
	} > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)
	@echo "wrote $(LOCK): $$(grep -c '==' $(LOCK)) packages"

data: $(DEMO)

# The simulated cohort (48 controls, 24 patients) and chapter 6's pools for its live run (8
# healthy for the generator's pretraining; per class 6 training, 2 validation, 6 test, 2 at a
# fourth site).
$(DEMO): | $(STAMP)
	@$(BIN)/neurodiff demo-data --out data/raw/demo
	@$(BIN)/neurodiff demo-data --pools 8,6,2,6,2 --out data/raw/demo-pools

notebooks run: $(STAMP) $(DEMO)
	$(BIN)/neurodiff run --profile $(PROFILE) $(ARGS)

book: $(STAMP)
	$(BIN)/neurodiff book

report: $(STAMP) $(DEMO)
	@$(BIN)/neurodiff run --profile $(PROFILE) $(ARGS)
	@$(BIN)/neurodiff book
	@echo "open _build/html/index.html"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest $(ARGS)

# The timing benchmarks with their defaults (the studies -- recipes.py, longer_run.py,
# ddim_background.py, teaching_guide.py -- take their own arguments and up to an hour).
TIMINGS := metrics_speed preprocess_steps sampling_speed train_throughput

benchmark: $(STAMP)
	for b in $(TIMINGS); do echo "== benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py || exit 1; done

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

dist: $(STAMP)
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf _build book/executed data/derived dist

distclean: clean
	rm -rf $(VENV) data/raw/demo

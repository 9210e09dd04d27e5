# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs:
# the venv (re-installed when pyproject.toml changes), the system packages below when missing,
# the server jars (fetched once by `sdlcflow up` into ~/.cache/sdlcflow), and the servers.
# The interpreter: Debian's CPython 3.11 when it is there with its venv module. Debian builds it
# with profile-guided and link-time optimisation into one static binary; a default pyenv or
# source build (no PGO, libpython as a shared library) runs the pure core 1.2x slower on the
# same machine (benchmarks/results/interpreter_ab.json). PYTHON=... picks another one.
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null \
            && echo /usr/bin/python3.11 || echo python3.11)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# apt-get as root, or through sudo for a developer account
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: install sysdeps up down status check lint types unit test demo clean FORCE

# The real path of $(PYTHON), rewritten (and so newer than the stamp) only when it changes: a
# venv made by another interpreter is then made again.
INTERPRETER := $(VENV)/.interpreter
WANT_PYTHON  = $$(command -v $(PYTHON) >/dev/null && $(PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))')

$(INTERPRETER): FORCE
	@mkdir -p $(VENV); want=$(WANT_PYTHON); \
	[ "$$(cat $@ 2>/dev/null)" = "$$want" ] || echo "$$want" > $@

$(STAMP): pyproject.toml Makefile $(INTERPRETER)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	@want=$(WANT_PYTHON); \
	if [ -x $(BIN)/python ]; then \
	  have=$$($(BIN)/python -c 'import os, sys; print(os.path.realpath(sys._base_executable))'); \
	  if [ "$$have" != "$$want" ]; then \
	    echo "re-creating $(VENV): it was made by $$have, not $$want"; rm -rf $(VENV); \
	  fi; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@echo $(WANT_PYTHON) > $(INTERPRETER)
	touch $(STAMP)

# The core's hot modules compiled with mypyc into sdlcflow/core/_compiled (tools/compile_core.py)
# and loaded only by sdlcflow/compiled_core.py's finder: 1.2-1.3x the pure core's throughput, the
# same decisions. Rebuilt when a source the build reads changes (BUILT_FROM in
# sdlcflow/compiled_core.py); until then sdlcflow.core warns and runs the sources, as it does
# with SDLCFLOW_PURE_CORE=1. A failed build fails make.
CORE_BUILT_FROM := $(addprefix sdlcflow/core/,decider.py fold.py expr.py planner.py records.py \
                     _records.c codec.py events.py state.py)
CORE_RECORD     := sdlcflow/core/_compiled/record.json

$(CORE_RECORD): $(CORE_BUILT_FROM) sdlcflow/compiled_core.py tools/compile_core.py $(STAMP)
	@command -v gcc >/dev/null && $(BIN)/python -c 'import sysconfig, os, sys; \
	  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || { echo "error: compiling the core needs gcc and the Python headers" \
	       "(Debian: make sysdeps, or apt-get install gcc python3.11-dev)" >&2; exit 1; }
	@$(BIN)/python tools/compile_core.py > .core-build.log 2>&1 \
	  && tail -n 1 .core-build.log \
	  || { cat .core-build.log >&2; \
	       echo "error: compiling the core with mypyc failed (full log: .core-build.log)" >&2; \
	       exit 1; }

install: $(STAMP) $(CORE_RECORD)

# Debian packages: Java 17 and Maven run the local Kafka and Cassandra (Cassandra 5.0 needs
# exactly Java 17); Chromium and its driver drive the reviewer console in the browser tests;
# PostgreSQL is the lease-table baseline of `sdlcflow bench` (and its integration tests);
# promtool (Debian's prometheus) checks and unit-tests the alert rules in infra/prometheus;
# bubblewrap isolates the file system of agents' sandboxed commands (sdlcflow/sandbox.py);
# gcc and the Python headers compile the core (tools/compile_core.py).
sysdeps:
	@missing=""; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	[ "$(PYTHON)" != /usr/bin/python3.11 ] || [ -e /usr/include/python3.11/Python.h ] \
	  || missing="$$missing python3.11-dev"; \
	[ -n "$$SDLCFLOW_JAVA_HOME" ] || ls /usr/lib/jvm/*-17-*/bin/java >/dev/null 2>&1 \
	  || missing="$$missing openjdk-17-jdk-headless"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(APT) update -q && $(APT) install -y -q $$missing; \
	fi

up: install sysdeps
	$(BIN)/sdlcflow up

down: install
	$(BIN)/sdlcflow down

status: install
	$(BIN)/sdlcflow status

lint: install
	$(BIN)/ruff check sdlcflow tests benchmarks tools
	$(BIN)/ruff format --check sdlcflow tests benchmarks tools

types: install
	$(BIN)/mypy
	$(BIN)/mypy tools

check: lint types

unit: install
	$(BIN)/pytest -q tests/unit

# pytest exits 5 when it collected no test: that is a broken suite, say so
test: check up
	@$(BIN)/pytest -q -rs tests; status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$status

demo: up
	$(BIN)/sdlcflow demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .core-build.log
	rm -rf sdlcflow/core/_compiled sdlcflow/core/._compiled.* sdlcflow/core/*.so \
	  sdlcflow/core/_compiled.json

# conductor-perf. Every target creates .venv and installs from requirements.txt on first use.
#   make perf                   all suites against the embedded reference conductor (default profile)
#   CONDUCTOR_BINARY=/path/to/run-agent make perf
#                               the same against that conductor-loop build (the suite starts and owns it)
#   make perf PROFILE=quick     the short profile (CI)
#   make perf-pabot             the same under pabot (PROCESSES=2)
#   make acceptance             only the acceptance suites (tag acceptance) against the embedded conductor
#   make compare A=embedded B="embedded:--slowdown-us 10" [SUITES=api] [ROUNDS=8] [PROFILE=quick]
#                               two SUTs in one interleaved (ABBA) run: the ratio B/A of every figure
#   make test                   the project's unit tests (pytest, TEST_WORKERS=4 processes)
#   make perf-tools             Linux perf, for the CPU hot spots of a conductor-loop build (apt)
#   make perf KEEP_DATA=1       keep the SUT's and benchmarks' scratch data (runs roots, bus files);
#                               make compare and make swarm take KEEP_DATA=1 too
#   make prune KEEP=5           remove all but the 5 newest run directories (history.jsonl stays)
#   make swarm SCENARIO=bus WORKERS=10
#                               one target with its load from WORKERS pabot processes (swarm/, README "Swarms")
PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
PROFILE   ?= default
PROCESSES ?= 2
ARGS      ?=
KEEP      ?= 5
KEEP_DATA ?=
RUN_OPTS  := $(if $(filter-out 0,$(KEEP_DATA)),--keep-data)
SCENARIO  ?= bus
WORKERS   ?= 10
CALIBRATE ?= --reference
# most unit tests wait on sockets and child processes, so more workers than cores pays off
TEST_WORKERS ?= 4

.PHONY: venv test perf perf-pabot acceptance compare swarm prune lint libdoc wrk perf-tools calibrate clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

perf: $(STAMP)
	$(BIN)/python -m conductor_perf.run --profile $(PROFILE) $(RUN_OPTS) $(ARGS)

acceptance: $(STAMP)
	$(BIN)/python -m conductor_perf.run --profile $(PROFILE) --include acceptance $(RUN_OPTS) $(ARGS)

perf-pabot: $(STAMP)
	$(BIN)/python -m conductor_perf.run --profile $(PROFILE) --processes $(PROCESSES) $(RUN_OPTS) $(ARGS)

# old run directories go; results/history.jsonl (the runs' figures) and results/latest stay
prune: $(STAMP)
	$(BIN)/python -m conductor_perf.report_cli prune --keep $(KEEP)

# A and B: embedded, embedded:<reference flags> or a conductor-loop executable; the profile is quick
# unless PROFILE is given on the command line or in the environment
compare: $(STAMP)
	$(BIN)/python -m conductor_perf.compare --a "$(A)" --b "$(B)" $(if $(SUITES),--suites "$(SUITES)") \
	  $(if $(ROUNDS),--rounds $(ROUNDS)) $(if $(filter command line environment,$(origin PROFILE)),--profile $(PROFILE)) \
	  $(RUN_OPTS) $(ARGS)

# one target, its load from WORKERS pabot processes against one SUT (SCENARIO: bus, bus-http, api, tasks, sse)
swarm: $(STAMP)
	$(BIN)/python -m conductor_perf.swarm --scenario $(SCENARIO) --workers $(WORKERS) --profile $(PROFILE) $(RUN_OPTS) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/robocop check suites resources compare swarm
	$(BIN)/robocop format --check suites resources compare swarm

libdoc: $(STAMP)
	mkdir -p results/libdoc
	for lib in libraries/[A-Z]*Library.py; do \
	  $(BIN)/python -m robot.libdoc --pythonpath libraries $$lib results/libdoc/$$(basename $$lib .py).html || exit 1; \
	done

# wrk is only needed for the load generator calibration (python -m conductor_perf.measure.calibrate)
wrk:
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

# Linux perf samples a native SUT's CPU hot spots (readelf/nm of binutils name their source lines);
# the hot-spot test of a conductor-loop build skips, saying so, without it
perf-tools:
	command -v perf >/dev/null && command -v readelf >/dev/null || (apt-get update -qq && apt-get install -y -qq linux-perf binutils)

# the load generator next to wrk on the embedded conductor: req/s ratio, requests per CPU second and
# latency at a fixed rate; another SUT: make calibrate CALIBRATE="--binary /path/to/run-agent --connections 16"
calibrate: $(STAMP) wrk
	$(BIN)/python -m conductor_perf.measure.calibrate $(CALIBRATE)

clean:
	rm -rf $(VENV) build *.egg-info

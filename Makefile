# Two commands do everything on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
LISTEN ?= 127.0.0.1:50051
DATA_DIR ?= ./data
METRICS_PORT ?= 0
GATEWAYS ?= auto
# make test's pytest-xdist workers: one per core, at most 4 (each starts servers of its own);
# TEST_WORKERS=0 runs every test in one pytest process, with a header line per tier.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: run test test-fast lint protos proto-bundle bench bench-gateways bench-smoke clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

## Start atpd on 127.0.0.1:50051 with its LMDB data in ./data (--gateways auto: a writer
## process and a gateway per core but one; GATEWAYS=0 runs one process); METRICS_PORT=9464 serves
## Prometheus metrics at http://127.0.0.1:9464/metrics (0, the default: none).
run: $(INSTALLED)
	$(BIN)/atpd --listen $(LISTEN) --data-dir $(DATA_DIR) --metrics-port $(METRICS_PORT) \
		--gateways $(GATEWAYS)

## Run every test tier: unit, store contract, property, integration, crash, CLI, cluster...
## TEST_WORKERS pytest-xdist workers, a test module to a worker (its shared server with it).
test: $(INSTALLED)
	$(BIN)/python -m pytest -q -p no:cacheprovider -p tests.support.tiers \
		-n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

## Unit and property tests only (no server processes).
test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -q -p no:cacheprovider -p tests.support.tiers -m "not integration and not crash" $(PYTEST_ARGS)

LINT_INSTALLED := $(VENV)/.installed-lint
$(LINT_INSTALLED): $(INSTALLED) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(LINT_INSTALLED)

## mypy --strict over src/ and ruff over src/ and bench/.
lint: $(LINT_INSTALLED)
	$(BIN)/mypy src
	$(BIN)/ruff check src bench

## Regenerate the committed stubs in src/atp/v1 from protos/.
protos: $(INSTALLED)
	$(BIN)/python scripts/gen_protos.py

## Our protos and every Google/gRPC proto they import, for clients in other languages:
## build/proto-bundle/ (use it as the only protoc -I) and build/proto-bundle.tar.gz.
proto-bundle: $(INSTALLED)
	$(BIN)/python scripts/proto_bundle.py build/proto-bundle --tar

BENCH_INSTALLED := $(VENV)/.installed-bench
$(BENCH_INSTALLED): $(INSTALLED) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_INSTALLED)

## Load test on a fresh atpd: every workload, then the audit; results in bench/results/.
## Pass flags with BENCH_ARGS="--duration 5 --workloads reserve,stream".
## Then the same four workloads with --gateways 0 and 1 side by side (bench.gateways;
## GATEWAY_BENCH_ARGS="--counts 0,7" on a bigger machine).
bench: $(BENCH_INSTALLED)
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.gateways $(GATEWAY_BENCH_ARGS)

## Only the gateway comparison: reserve, stream, availability, promise with each count.
bench-gateways: $(BENCH_INSTALLED)
	$(BIN)/python -m bench.gateways $(GATEWAY_BENCH_ARGS)

## The bench smoke run (tiny sizes, about 10 s; also part of make test).
bench-smoke: $(INSTALLED)
	$(BIN)/python -m bench.run --smoke $(BENCH_ARGS)

.PHONY: failover
## Failover on etcd, long version: the failover tests with ATP_FAILOVER_KILLS kills of the
## leader and ATP_FAILOVER_PAUSES SIGSTOP rounds (make test runs 2 and 1), every example
## across a failover (make test runs two of the four cases), then the failover
## bench (reserve throughput sync 0 vs 1, replication lag, failover time over the kill loop);
## results in bench/results/failover-*. Bench flags: FAILOVER_ARGS="--seconds 5".
ATP_FAILOVER_KILLS ?= 10
ATP_FAILOVER_PAUSES ?= 5
failover: $(INSTALLED)
	ATP_FAILOVER_KILLS=$(ATP_FAILOVER_KILLS) ATP_FAILOVER_PAUSES=$(ATP_FAILOVER_PAUSES) \
	  ATP_FAILOVER_LONG=1 $(BIN)/python -m pytest -q -p no:cacheprovider -rP \
	  tests/cluster/test_failover.py tests/cluster/test_examples_failover.py $(PYTEST_ARGS)
	$(BIN)/python -m bench.failover --kills $(ATP_FAILOVER_KILLS) $(FAILOVER_ARGS)

.PHONY: soak
## Soak on a fresh atpd: a long mixed lifecycle load; RSS, disk and restart time must stay
## bounded. Results in bench/results/soak-*. Flags: SOAK_ARGS="--lifecycles 200000 --sync off".
soak: $(BENCH_INSTALLED)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info

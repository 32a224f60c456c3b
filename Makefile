# The two commands of the README: `make demo` and `make test`.
.PHONY: setup demo test up down status bench lint chaos

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/test.sh

up: setup
	@.venv/bin/pipeline dev up

down:
	@.venv/bin/pipeline dev down

status:
	@.venv/bin/pipeline dev status

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

# py-spy sampling the measured process inflates its latency tenfold (docs/benchmarks.md),
# so `make bench` measures without it; `make bench BENCH_ARGS=` profiles as it measures.
# Every path runs 3 times, interleaved, each goal judged on the worst run (bench/run.py):
#   make bench BENCH_ARGS="--no-profile --runs 1"   one run, for quick iterations
#   make bench BENCH_ARGS="--no-profile --full"     issue 17's loads, Temporal on PostgreSQL
# The last phase of every run is the real workflow and worker (bench/workflow_bench.py);
#   make bench BENCH_ARGS="--no-profile --skip-workflow"   leaves it out
BENCH_ARGS ?= --no-profile
bench: setup
	@.venv/bin/python -m bench.run $(BENCH_ARGS)

# The chaos harness (docs/reliability.md); `make test` runs its short run through pytest.
CHAOS_ARGS ?= --seed 14 --bootstraps 300 --rate 2 --faults 6 --replicas 1
chaos: setup
	@.venv/bin/python -m bench.chaos $(CHAOS_ARGS)

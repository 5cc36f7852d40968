# MediaMesh: `make run` starts it with demo data on the embedded defaults,
# `make test` runs every test. See README.md for what each needs.

GO       ?= go
BIN      := bin/mediamesh
PROGRAMS ?= 50
# -race on every package. -timeout bounds each package's test binary, so a hung test
# fails its package (with every goroutine's stack) instead of eating CI's budget; the
# whole run must stay well under 10 minutes on 2 cores (see README).
TESTFLAGS ?= -race -count=1 -timeout 8m

.PHONY: build run migrate seed test bench loadtest-smoke lint clean

build:
	$(GO) build -o $(BIN) ./cmd/mediamesh

# Build, migrate, load the demo catalog (idempotent: safe on every start), serve.
run: build
	$(BIN) migrate up
	$(BIN) seed --programs $(PROGRAMS)
	$(BIN) serve

migrate: build
	$(BIN) migrate up

seed: build
	$(BIN) seed --programs $(PROGRAMS)

test:
	$(GO) test $(TESTFLAGS) ./...

# Benchmarks write bench-SUITE.json (git-ignored) and print a summary.
bench: build
	$(BIN) bench append --json bench-append.json
	$(BIN) bench auth --json bench-auth.json
	$(BIN) bench assets --json bench-assets.json

# A short k6 run against the scale-out stack (scripts/loadtest-smoke.sh says what it
# needs and starts).
loadtest-smoke: build
	./scripts/loadtest-smoke.sh

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin

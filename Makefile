# MediaMesh: `make run` starts it with demo data on the embedded defaults,
# `make test` runs every test. See README.md for what each needs.

GO       ?= go
BIN      := bin/mediamesh
PROGRAMS ?= 50
# -race on every package; measured under 10 minutes on 2 cores (see README).
TESTFLAGS ?= -race -count=1 -timeout 10m

.PHONY: build run migrate seed test bench lint clean

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

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin

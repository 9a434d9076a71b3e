# Tidemark: `make demo` to see the pipeline work, `make test` to check it.
GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN         ?= bin/tidemark
BENCH_ROWS  ?= 1000000

.PHONY: build test lint bench demo clean

build:
	$(GO) build -o $(BIN) ./cmd/tidemark

# Every package, race detector on, against a throw-away PostgreSQL and embedded NATS: vectors
# stored with pgvector, then the tests that touch vectors again with real[]. Most tests wait
# (on subprocesses, outages, redeliveries, index builds) more than they compute: those with
# servers of their own run PARALLEL at a time, and the first run tests 3 packages at once
# (cmd/tidemark's alone takes as long as most of the others together).
ARRAY_TESTS ?= Search|Index|Status|Doctor|Vector|Dashboard|PipelineUnderFaults|StreamFlag|EncodeDebezium
PARALLEL    ?= 4
test:
	TIDEMARK_TEST_VECTORS=pgvector $(GO) test -race -count=1 -timeout 25m -p 3 -parallel $(PARALLEL) ./...
	TIDEMARK_TEST_VECTORS=array $(GO) test -race -count=1 -timeout 15m -parallel $(PARALLEL) ./encoder/ ./catalog/ ./health/
	TIDEMARK_TEST_VECTORS=array $(GO) test -race -count=1 -timeout 15m -parallel $(PARALLEL) -run '$(ARRAY_TESTS)' ./cmd/tidemark/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Every stage against its baseline in one run (BENCH_ROWS rows), then the Go micro-benchmarks.
bench: build
	BENCH_ROWS=$(BENCH_ROWS) $(GO) run ./bench -stage-timeout 30m
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo: build
	$(BIN) demo

clean:
	rm -rf bin bench/out

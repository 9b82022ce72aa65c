GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build test demo lint deps fuzz bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/certpush ./cmd/certpush
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/certnode ./cmd/certnode

deps:
	@scripts/deps.sh

# Unit and integration tests: the integration tests start real sshd, nginx
# and pebble on loopback.
test: deps
	$(GO) test -race -count=1 -timeout 30m ./...

# A local fleet of three hosts (sshd + nginx each) on loopback: obtain,
# push, verify, rotate; everything it starts is stopped at the end.
demo: deps build
	$(GO) run ./demo -bin $(BIN)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin $(GO) build ./cmd/...
	GOOS=freebsd $(GO) build ./cmd/...

# Each fuzzer for a bounded time (FUZZTIME each).
FUZZTIME ?= 15s
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

bench:
	bench/run.sh

clean:
	rm -rf $(BIN)

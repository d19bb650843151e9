# feedmq: `make run` starts a broker on the embedded default store;
# `make test` installs what the tests need and runs them.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/feedmq
FUZZTIME ?= 15s
# Tests that drive real clients refuse to skip when this is set.
export FEEDMQ_REQUIRE_CLIENTS := 1

.PHONY: all build run test test-deps vet fmt fuzz bench clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/feedmq

run: build
	./$(BIN) serve

# Debian's mosquitto-clients (mosquitto_pub/mosquitto_sub) talk to the
# broker in the integration tests.
test-deps:
	@if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1 || \
		! /usr/bin/python3 -c 'import paho.mqtt.client' >/dev/null 2>&1; then \
		echo "installing mosquitto-clients python3-paho-mqtt"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq mosquitto-clients python3-paho-mqtt >/dev/null; \
	fi

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: test-deps fmt vet
	$(GO) test -race -timeout 9m ./...

# Each fuzz target for FUZZTIME; corpora grow in <pkg>/testdata/fuzz.
FUZZ_TARGETS := channels:FuzzParseTopic channels:FuzzParsePayload \
	channels:FuzzParseSensorTopic channels:FuzzParseSensorPayload \
	storage:FuzzDecodeEntry

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./$$pkg; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin

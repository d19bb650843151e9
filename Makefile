# feedmq: `make run` starts a broker on the embedded default store;
# `make test` installs what the tests need and runs them.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN      := bin/feedmq
FUZZTIME ?= 15s
# Tests that drive real clients refuse to skip when this is set.
export FEEDMQ_REQUIRE_CLIENTS := 1

.PHONY: all build run test test-postgres test-cluster test-arm test-deps test-deps-systemd vet fmt fuzz bench bench-cluster clean \
	man install uninstall release release-check

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/feedmq

run: build
	./$(BIN) serve

# Debian's mosquitto-clients (mosquitto_pub/mosquitto_sub) talk to the
# broker in the integration tests; headless chromium drives the dashboard;
# curl and jq run the README's API examples as written; postgresql's
# server binaries run throwaway databases for the PostgreSQL store's tests
# (internal/pgtest; the service it installs is not used).
test-deps:
	@if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1 || \
		! /usr/bin/python3 -c 'import paho.mqtt.client' >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1 || \
		! command -v curl >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1 || \
		! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing mosquitto-clients python3-paho-mqtt chromium curl jq postgresql"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq mosquitto-clients python3-paho-mqtt chromium curl jq postgresql >/dev/null; \
	fi

# $(call apt-install,COMMAND,PACKAGE): Debian's PACKAGE, unless COMMAND is
# already there.
apt-install = if ! command -v $(1) >/dev/null 2>&1; then \
		echo "installing $(2) (for $(1))"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(2) >/dev/null; \
	fi

# Also for 32-bit ARM (a Raspberry Pi's 32-bit OS, a release platform):
# an int is 32 bits there, and constants that fit only 64 break its build.
vet:
	$(GO) vet ./...
	GOOS=linux GOARCH=arm GOARM=7 $(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: test-deps test-deps-systemd fmt vet
	$(GO) test -race -timeout 9m ./...

# The REST API's tests again, over PostgreSQL instead of bbolt: a database
# per test on one throwaway server (internal/pgtest). `make test` runs them
# on bbolt; the store tests themselves run on both there.
test-postgres: test-deps
	FEEDMQ_TEST_STORE=postgres FEEDMQ_REQUIRE_POSTGRES=1 $(GO) test -race -timeout 9m ./http/...

# The long cluster scenarios: three `feedmq serve` nodes on one PostgreSQL
# and three NATS servers, killed, cut off and restarted under load
# (internal/e2e/cluster_test.go; `make test` runs only the quick one).
test-cluster: test-deps
	FEEDMQ_CLUSTER_SCENARIOS=1 $(GO) test -count=1 -timeout 12m -run '^TestClusterScenario' -v ./internal/e2e

# The store, the domain and the broker on 32-bit ARM (a Raspberry Pi's
# 32-bit OS, a release platform), run under Debian's qemu-user-static: an
# int is 32 bits there and 64-bit atomics need alignment, which vet and a
# cross-build do not prove. The clients the broker's tests drive are the
# host's own.
test-arm: test-deps
	@$(call apt-install,qemu-arm-static,qemu-user-static)
	GOOS=linux GOARCH=arm GOARM=7 $(GO) test -count=1 -timeout 15m -exec qemu-arm-static \
		./internal/datasync/ ./storage/ ./channels/ ./auth/ ./broker/ ./http/

# Each fuzz target for FUZZTIME; corpora grow in <pkg>/testdata/fuzz.
FUZZ_TARGETS := channels:FuzzParseTopic channels:FuzzParsePayload \
	channels:FuzzParseSensorTopic channels:FuzzParseSensorPayload \
	channels:FuzzParseFilter channels:FuzzParseID channels:FuzzCSVCell \
	channels:FuzzParseTags channels:FuzzValidateSettings \
	auth:FuzzParseGrant auth:FuzzDecodeOwnerHash \
	broker:FuzzFrameGuard broker:FuzzDecodePublish broker:FuzzReadPathSplit broker:FuzzWSReader broker:FuzzWSReaderReference \
	storage:FuzzDecodeEntry storage:FuzzScanWAL http:FuzzQueryParams \
	http:FuzzParseManage http:FuzzParseGrants http:FuzzConsoleForms \
	channels:FuzzParseBucket channels:FuzzRows channels:FuzzCSVImport cmd/feedmq:FuzzDecodeFeedEntry \
	http:FuzzParseBulkCSV http:FuzzDecodeBulkJSON http:FuzzEmbedOptions \
	cmd/feedmq:FuzzDecodeConfig cmd/feedmq:FuzzReadPasswordLine \
	auth:FuzzParseACL auth:FuzzParseRule channels:FuzzExtractBinding channels:FuzzParsePath \
	http:FuzzConsoleImport cluster:FuzzDecodeMessage storage/postgres:FuzzDecodeNotice storage/postgres:FuzzDecodeRetainedNotice \
	cmd/feedmq:FuzzClusterURLs cmd/feedmq:FuzzParsePassword internal/loadgen:FuzzParseAddrs cluster:FuzzDecodeFree

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./$$pkg; \
	done

# feedmq against Mosquitto with `feedmq bench` (installs mosquitto if
# missing), then the Go benchmarks; a few minutes. See scripts/bench.sh.
bench: build
	GO=$(GO) scripts/bench.sh $(BIN)

# Cluster mode on this machine: one PostgreSQL, three NATS servers (built
# from the module cache) and 1, 2 and 3 feedmq nodes against bbolt on one
# node, then failover times (a node killed, PostgreSQL restarted); about
# three minutes a round (BENCH_ROUNDS, default 1). Not part of `make
# test`. See scripts/bench-cluster.sh.
bench-cluster: build
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2
	GO=$(GO) scripts/bench-cluster.sh $(BIN) bin/nats-server

clean:
	rm -rf bin dist man

# systemd-analyze verifies configs/feedmq.service in the tests. Debian's
# systemd package installs fine in a container without becoming init.
test-deps-systemd:
	@$(call apt-install,systemd-analyze,systemd)

# Man pages (man/feedmq*.1) from the command tree, dated by the last commit
# so that they are the same on every build of it.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

man: build
	rm -rf man
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) ./$(BIN) man --dir man

# make install [PREFIX=/usr/local] [DESTDIR=/tmp/pkg]: the binary, its man
# pages and the systemd unit, and the default configuration unless one is
# there already (an existing configuration is never overwritten). Settings
# of the unit belong in `systemctl edit feedmq`, so the unit is replaced.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man/man1
CONFDIR ?= /etc/feedmq
UNITDIR ?= /etc/systemd/system

install: build man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/feedmq
	install -m 0644 man/*.1 $(DESTDIR)$(MANDIR)/
	sed -e 's|/usr/local/bin/feedmq|$(BINDIR)/feedmq|' -e 's|/etc/feedmq/feedmq.yaml|$(CONFDIR)/feedmq.yaml|' \
		configs/feedmq.service > bin/feedmq.service
	install -m 0644 bin/feedmq.service $(DESTDIR)$(UNITDIR)/feedmq.service
	@if [ -e $(DESTDIR)$(CONFDIR)/feedmq.yaml ]; then \
		echo "kept the existing $(DESTDIR)$(CONFDIR)/feedmq.yaml (the new default is configs/feedmq.yaml)"; \
	else \
		echo "install -m 0644 configs/feedmq.yaml $(DESTDIR)$(CONFDIR)/feedmq.yaml"; \
		install -m 0644 configs/feedmq.yaml $(DESTDIR)$(CONFDIR)/feedmq.yaml; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "next: systemctl enable --now feedmq; journalctl -u feedmq"

# Removes what install put in place except the configuration and the data
# (/var/lib/feedmq).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/feedmq $(DESTDIR)$(UNITDIR)/feedmq.service $(DESTDIR)$(MANDIR)/feedmq.1 $(DESTDIR)$(MANDIR)/feedmq-*.1
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Static, reproducible release binaries and their checksums in dist/: the
# same commit built with the same Go release gives the same bytes (no cgo,
# no build paths, no VCS stamp or build ID; the target CPU levels pinned).
DIST      ?= dist
PLATFORMS := linux/amd64 linux/arm64 linux/arm/7
RELEASE_LDFLAGS := -s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT)

release:
	rm -rf $(DIST)
	mkdir -p $(DIST)
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%%/*}; rest=$${p#*/}; arch=$${rest%%/*}; arm=; name=$$arch; \
		case $$rest in */*) arm=$${rest#*/}; name=$${arch}v$$arm;; esac; \
		out=$(DIST)/feedmq-$(VERSION)-$$os-$$name; echo "build $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm GOAMD64=v1 GOARM64=v8.0 GOFLAGS=-mod=readonly \
			$(GO) build -trimpath -buildvcs=false -ldflags "$(RELEASE_LDFLAGS)" -o $$out ./cmd/feedmq; \
	done
	cd $(DIST) && sha256sum feedmq-* > SHA256SUMS
	@cat $(DIST)/SHA256SUMS

# Builds the release twice, the second time with an empty build cache, and
# compares the checksums.
release-check: release
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "rebuilding with an empty build cache in $$tmp"; \
	GOCACHE=$$tmp/cache $(MAKE) --no-print-directory release DIST=$$tmp/dist >/dev/null; \
	if diff -u $(DIST)/SHA256SUMS $$tmp/dist/SHA256SUMS; then \
		echo "release-check: reproducible"; \
	else \
		echo "release-check: the two builds differ"; exit 1; \
	fi

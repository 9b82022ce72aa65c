GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export PATH := $(PATH):/usr/local/go/bin

# make install: for systems without the Debian packages.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(PREFIX)/bin
LIBDIR  := $(PREFIX)/lib
SHAREDIR := $(PREFIX)/share
UNITDIR ?= $(LIBDIR)/systemd/system
# certpush init prints the node paths of this PREFIX.
LDFLAGS += -X github.com/certpush/certpush/hooks.binDir=$(BINDIR) \
	-X github.com/certpush/certpush/hooks.forcedCommand=$(LIBDIR)/certpush/certnode-forced-command

# make deb: packages for each of DEB_ARCH into DIST (see docs/packages.md).
DEB_VERSION ?= $(shell packaging/version.sh)
DEB_ARCH    ?= amd64 arm64
DIST        ?= dist

.PHONY: all build test demo lint deps fuzz bench clean deb install soak

all: build

# Static (CGO_ENABLED=0), as the packages are: certnode starts about 5 ms
# sooner than when linked against libc.
build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/certpush ./cmd/certpush
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/certnode ./cmd/certnode

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

# The long soak (docs/soak.md): 20 hosts, 3-minute certificates, every
# fault, 32 renewal cycles (about 50-55 minutes); rewrites SOAK.md and
# soak/*.png. `make test` runs the short version.
soak: deps
	$(GO) test -count=1 -timeout 3h -run '^TestSoak$$' -v ./test/soak/ -args -soak.long

# certpush_<version>_<arch>.deb and certnode_<version>_<arch>.deb, built
# with nfpm (pinned in tools/go.mod).
deb:
	GO='$(GO)' VERSION='$(DEB_VERSION)' ARCHES='$(DEB_ARCH)' DIST='$(DIST)' packaging/deb.sh

# The binaries, hooks, units and example configs under PREFIX (default
# /usr/local; DESTDIR for staging). Nothing in /etc is touched: copy the
# examples from $(SHAREDIR)/doc/certpush/examples.
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/certpush $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SHAREDIR)/certpush $(DESTDIR)$(SHAREDIR)/doc/certpush/examples
	install -m 0755 $(BIN)/certpush $(BIN)/certnode $(DESTDIR)$(BINDIR)/
	for f in certnode-forced-command certbot-deploy-certpush; do \
		sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/lib/certpush/|$(LIBDIR)/certpush/|g' hooks/$$f \
			>$(DESTDIR)$(LIBDIR)/certpush/$$f && chmod 0755 $(DESTDIR)$(LIBDIR)/certpush/$$f || exit 1; \
	done
	for f in sudoers.certnode sshd_config.certpush; do \
		sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/lib/certpush/|$(LIBDIR)/certpush/|g' hooks/$$f \
			>$(DESTDIR)$(SHAREDIR)/certpush/$$f && chmod 0644 $(DESTDIR)$(SHAREDIR)/certpush/$$f || exit 1; \
	done
	for f in packaging/systemd/*.service packaging/systemd/*.timer; do \
		sed -e 's|/usr/bin/|$(BINDIR)/|g' -e 's|/usr/share/doc/cert[a-z]*/|$(SHAREDIR)/doc/certpush/|g' $$f \
			>$(DESTDIR)$(UNITDIR)/$${f##*/} && chmod 0644 $(DESTDIR)$(UNITDIR)/$${f##*/} || exit 1; \
	done
	install -m 0644 inventory/certpush.yaml inventory/certnode.yaml $(DESTDIR)$(SHAREDIR)/doc/certpush/examples/
	install -m 0644 docs/packages.md $(DESTDIR)$(SHAREDIR)/doc/certpush/

clean:
	rm -rf $(BIN) build $(DIST)

# The two commands of the README, and a few more for developers.
#   make run    install what is missing, build, start tern with the demo config
#   make test   install what is missing, build, run every test
BUILD    ?= build
ASAN_BUILD ?= build-asan
CONFIG   ?= etc/tern-demo.conf
PYTEST   ?= python3 -m pytest
# make install: DESTDIR for staging (packages), PREFIX for the binary,
# the unit and the documentation; the configuration always goes to
# /etc/tern, where tern looks for it.
PREFIX   ?= /usr/local
SBINDIR  ?= $(PREFIX)/sbin
UNITDIR  ?= $(PREFIX)/lib/systemd/system
DOCDIR   ?= $(PREFIX)/share/doc/tern
SYSCONFDIR ?= /etc

.PHONY: all deps build run test unit integration test-cassandra asan test-asan bench clean install uninstall

all: build

deps:
	@sh scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j2

run: build
	@sh scripts/demo-setup.sh $(BUILD) $(CONFIG)
	exec $(BUILD)/tern -c $(CONFIG) serve

unit: build
	ctest --test-dir $(BUILD) --output-on-failure

integration: build
	TERN_BIN=$(CURDIR)/$(BUILD)/tern $(PYTEST) -q tests/integration

# Every test: C unit tests, then one pytest session for the lib-cql,
# Cassandra-store and embedded-store integration suites (it starts a real
# Cassandra node itself), the integration suite again on Cassandra, and the
# sanitizer build. TERN_SKIP_CASSANDRA=1 skips what needs Cassandra.
# A test node creates and drops many keyspaces: give it room.
export TERN_CASSANDRA_HEAP ?= 1g

test: build
	ctest --test-dir $(BUILD) --output-on-failure
	TERN_BIN=$(CURDIR)/$(BUILD)/tern $(PYTEST) -q tests
	TERN_BIN=$(CURDIR)/$(BUILD)/tern TERN_TEST_BACKEND=cassandra $(PYTEST) -q tests/integration
	$(MAKE) test-asan

# The Cassandra suites alone (they start their own nodes).
test-cassandra: build
	TERN_BIN=$(CURDIR)/$(BUILD)/tern $(PYTEST) -q tests/cql tests/cassandra

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTERN_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j2

# The sanitizer build runs the C unit tests and the embedded-store
# integration suite (the Cassandra suites run once, in the normal build).
test-asan: asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir $(ASAN_BUILD) --output-on-failure
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		TERN_BIN=$(CURDIR)/$(ASAN_BUILD)/tern TERN_SANITIZED=1 $(PYTEST) -q tests/integration

# Installs what `make build` made (it does not build: run make first, as
# yourself, then make install as root). The unit's paths follow PREFIX.
# The configuration is installed as an example only, never over a
# tern.conf; docs/service.md says how to create the tern user and its
# data_dir.
install:
	@test -x $(BUILD)/tern || { echo "$(BUILD)/tern is missing: run make first" >&2; exit 1; }
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/tern
	install -m 0755 $(BUILD)/tern $(DESTDIR)$(SBINDIR)/tern
	sed -e 's|/usr/local/sbin/tern|$(SBINDIR)/tern|g' -e 's|/usr/local/share/doc/tern|$(DOCDIR)|g' \
		-e 's|/etc/tern/|$(SYSCONFDIR)/tern/|g' contrib/systemd/tern.service > $(DESTDIR)$(UNITDIR)/tern.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/tern.service
	install -m 0644 etc/tern.conf.example $(DESTDIR)$(SYSCONFDIR)/tern/tern.conf.example
	install -m 0644 docs/service.md $(DESTDIR)$(DOCDIR)/service.md

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/tern $(DESTDIR)$(UNITDIR)/tern.service \
		$(DESTDIR)$(SYSCONFDIR)/tern/tern.conf.example $(DESTDIR)$(DOCDIR)/service.md

bench: build
	@sh bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

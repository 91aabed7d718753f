# Thin wrapper over Meson/Ninja so that the usual verbs do what a newcomer
# expects.  `make demo` and `make check` install missing Debian packages.
BUILD ?= build
ASAN_BUILD ?= build-asan
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

BUILD_PKGS := meson ninja-build pkg-config gcc libsodium-dev libzstd-dev libp11-kit-dev \
              libsqlite3-dev libcurl4-openssl-dev libmicrohttpd-dev libfuse3-dev python3
TEST_PKGS := curl openssl softhsm2 p11-kit xxd strace util-linux mount base-passwd time golang-go \
             golang-golang-x-mod-dev zsh fish fuse3 unzip sqlite3 systemd
BENCH_PKGS := restic borgbackup linux-source-6.1 time xz-utils fuse3 openssh-server openssh-client attr acl
FUZZ_PKGS := clang

.PHONY: all build deps test-deps check check-asan demo bench bench-load bench-selftest fuzz clean install uninstall

all: build

# Install only what is missing (dpkg -s is fast; apt-get only when needed).
define install_pkgs
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps:
	$(call install_pkgs,$(BUILD_PKGS))

test-deps: deps
	$(call install_pkgs,$(TEST_PKGS))

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=release

build: deps $(BUILD)/build.ninja
	meson setup --reconfigure $(BUILD) >/dev/null
	ninja -C $(BUILD)

check: test-deps build
	@rm -f $(BUILD)/meson-logs/testlog.json
	-meson test -C $(BUILD) --num-processes 2 --print-errorlogs --no-rebuild -q
	@python3 scripts/test-summary.py $(BUILD)/meson-logs/testlog.json

check-asan: test-deps
	[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) --buildtype=debug \
	  -Db_sanitize=address,undefined -Db_lundef=false
	meson setup --reconfigure $(ASAN_BUILD) >/dev/null
	ninja -C $(ASAN_BUILD)
	@rm -f $(ASAN_BUILD)/meson-logs/testlog.json
	-ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  KH_ASAN=1 meson test -C $(ASAN_BUILD) --num-processes 2 --print-errorlogs --no-rebuild -q \
	  --timeout-multiplier 3
	@python3 scripts/test-summary.py $(ASAN_BUILD)/meson-logs/testlog.json

demo: build
	sh scripts/demo.sh $(BUILD)/cmd/keyhold/keyhold
	sh scripts/demo-server.sh $(BUILD)/cmd/keyhold/keyhold $(BUILD)/srv/keyholdd/keyholdd

# bench.sh: keyhold (embedded and through keyholdd), restic (local and over
# SFTP), borg (local and over SSH) on the Linux tree; load.sh: 50 devices at
# once against keyholdd.  docs/benchmarks.md.
bench: build
	$(call install_pkgs,$(BENCH_PKGS))
	sh bench/bench.sh $(BUILD)
	sh bench/kms.sh $(BUILD)
	sh bench/mount.sh $(BUILD)
	sh bench/overhead.sh $(BUILD)
	sh bench/load.sh $(BUILD)

bench-load: build
	sh bench/load.sh $(BUILD)

# checks of the harness itself (analyzer, "not available", private sshd); ~1 min
bench-selftest: build
	$(call install_pkgs,$(BENCH_PKGS))
	sh bench/selftest.sh $(BUILD)

fuzz: deps
	$(call install_pkgs,$(FUZZ_PKGS))
	[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzzing=true -Db_lundef=false
	ninja -C build-fuzz
	sh scripts/fuzz.sh build-fuzz

# `make install` copies what `make build` made (it does not build, so that
# `sudo make install` leaves no root-owned files in $(BUILD)): the binary,
# one man page per command (rendered by `keyhold help --man` from the same
# text as `keyhold help`) and the bash, zsh and fish completions.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
KEYHOLD_BIN ?= $(BUILD)/cmd/keyhold/keyhold

install:
	@[ -x $(KEYHOLD_BIN) ] || { echo "no $(KEYHOLD_BIN): run 'make build' first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) \
	  $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 755 $(KEYHOLD_BIN) $(DESTDIR)$(BINDIR)/keyhold
	$(KEYHOLD_BIN) help --man > $(DESTDIR)$(MANDIR)/man1/keyhold.1
	for v in $$($(KEYHOLD_BIN) help --list); do \
	  $(KEYHOLD_BIN) help --man $$v > $(DESTDIR)$(MANDIR)/man1/keyhold-$$v.1 || exit 1; \
	done
	$(KEYHOLD_BIN) completion bash > $(DESTDIR)$(BASHCOMPDIR)/keyhold
	$(KEYHOLD_BIN) completion zsh > $(DESTDIR)$(ZSHCOMPDIR)/_keyhold
	$(KEYHOLD_BIN) completion fish > $(DESTDIR)$(FISHCOMPDIR)/keyhold.fish

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/keyhold $(DESTDIR)$(MANDIR)/man1/keyhold.1 \
	  $(DESTDIR)$(MANDIR)/man1/keyhold-*.1 $(DESTDIR)$(BASHCOMPDIR)/keyhold \
	  $(DESTDIR)$(ZSHCOMPDIR)/_keyhold $(DESTDIR)$(FISHCOMPDIR)/keyhold.fish

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz

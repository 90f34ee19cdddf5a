# ublk-tools
#
# Targets:
#   all (default)  build the tools into build/ (or $(OUT))
#   check          check-host and check-vm: every test
#   check-host     host tests (CLI, layer stack) on a sanitizer build
#   check-vm       bats suites inside a ublk-enabled VM against real devices,
#                  on each kernel of VM_KERNELS, counted per kernel; the VMs
#                  run side by side (UBLK_VM_PARALLEL=1: one after the other)
#                  ("vm-6.12: N passed, N failed, N skipped (S s)"), then the
#                  host-crash suite (tests/crash: reboots the VM)
#   check-vm-kernel  the VM bats suites on one kernel (UBLK_VM_KERNEL), counted
#   check-loaded   check-vm's kernels while every host core is kept busy
#   demo           create, use and delete a device (in the VM if the host has no ublk)
#   bench          fio benchmarks in the VM; BENCH_AB=REV also measures REV
#                  in the same boot (an A/B of one change), BENCH_RUNTIME=S,
#                  BENCH_ROUNDS=N (fio rows N times, ratios within a round),
#                  BENCH_ONLY=boot,record (only those sections); the boot rows'
#                  image is built on the host first (tests/bench-boot-image.sh)
#   fuzz           libFuzzer harnesses, FUZZ_SECONDS (default 60) each (tests/fuzz/fuzz.mk)
#   soak           long stress: 500 server kills under fio verify, 300 add/del cycles, 5 power cuts
#   deps           install the Debian packages the build, tests and VM need
#   install        PREFIX=/usr/local DESTDIR= : binaries, man pages, completions, the
#                  ublk-pool watch unit, tmpfiles.d and udev rule, docs (uninstall: all gone)
#   deb            a Debian package of the same, in $(OUT) (lintian-clean)
#   clean
# Knobs:
#   V=1            show commands
#   SAN=1          ASan/UBSan build (into build-san/)
#   OUT=DIR        output folder
#   UBLK_VM_KERNEL 6.1 (default) or 6.12: the VM's kernel (tests/vm/build-kernel.sh)
#   VM_KERNELS     the kernels check-vm and check-loaded run on (default "6.1 6.12")
#   UBLK_VM_CACHE  where the VM kernel is cached (default /var/cache/ublk-tools-vm)
#   CHECK_JOBS     compile jobs of check's builds (default: the cores)

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
UNITDIR     ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
DOCDIR      ?= $(PREFIX)/share/doc/ublk-tools
VM_KERNELS  ?= 6.1 6.12
# compile jobs of check's builds (make check itself runs one thing at a time)
CHECK_JOBS  ?= $(shell nproc)

ifeq ($(SAN),1)
OUT ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
OUT ?= build
SANFLAGS =
endif

CC      ?= cc
# libcurl: headers at build time, loaded with dlopen when a URL is used (common/image/http.c)
PKGS    = liburing libzstd libcurl liblz4
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wvla -Wno-missing-field-initializers \
           -D_GNU_SOURCE -Icommon $(SANFLAGS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += $(SANFLAGS)
LDLIBS  = $(shell pkg-config --libs liburing libzstd liblz4 2>/dev/null) -lpthread -ldl

TOOLS   = ublk-add ublk-serve ublk-del ublk-export-diff ublk-pool
# common/ in rooms (docs/structure.md): util depends on nothing, image and
# kernel on util only, host on util and kernel; the top composes them.
UTIL_SRC   = aio atomic_file cfgline cli crc32c fileio json json_read log notify output_file parallel parse progress safedir sha256 sigbus timeutil
KERNEL_SRC = ctrl queue
IMAGE_SRC  = access_log access_trace blob cache_export cache_live cache_map chunkcache diff diff_frames diff_v3 e2b_builds e2b_data e2b_header e2b_inspect e2b_store e2b_write \
             fetch_pool http image layer layer_cache layer_diff layer_e2b layer_fault layer_file layer_http stack
HOST_SRC   = cgroup ctlsock device holders metrics pool pool_view ready state
TOP_SRC    = ctl_server devconfig devopts export pool_admin server spawn stack_target
LIB_SRC = $(UTIL_SRC:%=util/%) $(KERNEL_SRC:%=kernel/%) $(IMAGE_SRC:%=image/%) \
          $(HOST_SRC:%=host/%) $(TOP_SRC)
HDRS    = $(wildcard common/*.h common/*/*.h)
LIB_OBJ = $(LIB_SRC:%=$(OUT)/common/%.o)
BINS    = $(TOOLS:%=$(OUT)/%)
TEST_BINS = $(OUT)/tests/test-layers $(OUT)/tests/test-export $(OUT)/tests/test-diff $(OUT)/tests/test-formats $(OUT)/tests/test-http $(OUT)/tests/test-files $(OUT)/tests/test-parse $(OUT)/tests/test-e2b $(OUT)/tests/test-e2b-write $(OUT)/tests/test-e2b-store $(OUT)/tests/test-trace $(OUT)/tests/test-access \
            $(OUT)/tests/bare-devices $(OUT)/tests/pid-taker

ifneq ($(V),1)
Q = @
quiet = @printf '  %-6s %s\n' $(1) $(2);
endif

.SECONDARY:
.PHONY: all check check-host check-vm check-vm-kernel check-loaded soak demo bench deps install uninstall deb clean
all: $(BINS)

$(OUT)/common/%.o: common/%.c $(HDRS) | $(OUT)/common
	$(Q)mkdir -p $(@D)
	$(call quiet,CC,$@)$(CC) $(CFLAGS) -c -o $@ $<

$(OUT)/cmd/%.o: cmd/%.c $(HDRS) | $(OUT)/cmd
	$(call quiet,CC,$@)$(CC) $(CFLAGS) -c -o $@ $<

$(OUT)/libublktools.a: $(LIB_OBJ)
	$(call quiet,AR,$@)rm -f $@ && ar rcs $@ $^

$(OUT)/ublk-%: $(OUT)/cmd/ublk-%.o $(OUT)/libublktools.a
	$(call quiet,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OUT)/tests/%: tests/unit/%.c tests/unit/check.h tests/unit/layer_run.h $(OUT)/libublktools.a $(HDRS) | $(OUT)/tests
	$(call quiet,CC,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(OUT)/libublktools.a $(LDLIBS)

# helpers of the VM suite, not unit tests
$(OUT)/tests/bare-devices $(OUT)/tests/pid-taker: $(OUT)/tests/%: tests/vm/helpers/%.c $(OUT)/libublktools.a $(HDRS) | $(OUT)/tests
	$(call quiet,CC,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(OUT)/libublktools.a $(LDLIBS)

$(OUT)/common $(OUT)/cmd $(OUT)/tests:
	$(Q)mkdir -p $@

deps:
	$(Q)tests/deps.sh

# A sanitizer's report exits 86, which no tool does: a test that expects
# a failure (exit 1, say) is not passed by a crash.
SAN_EXIT = ASAN_OPTIONS=exitcode=86 UBSAN_OPTIONS=exitcode=86:print_stacktrace=1

# The VM suites run even when a host test failed: every count is reported.
check:
	$(Q)rc=0; $(MAKE) --no-print-directory check-host || rc=1; \
	$(MAKE) --no-print-directory check-vm || rc=1; exit $$rc

check-host: deps
	$(Q)$(MAKE) --no-print-directory -j$(or $(CHECK_JOBS),1) SAN=1 all $(subst $(OUT),build-san,$(TEST_BINS))
	$(Q)$(MAKE) --no-print-directory -j$(or $(CHECK_JOBS),1) fuzz-build
	$(Q)UBLK_BIN=$(CURDIR)/build-san UBLK_TEST_BIN=$(CURDIR)/build-san/tests \
		UBLK_FUZZ_BIN=$(CURDIR)/build-fuzz $(SAN_EXIT) bats tests/host

# Every kernel runs even when another failed: each count is reported. The
# kernels' VMs run side by side (tests/vm/check-kernels.sh).
check-vm: deps
	$(Q)$(MAKE) --no-print-directory -j$(or $(CHECK_JOBS),1) all $(TEST_BINS)
	$(Q)rc=0; UBLK_BIN=$(CURDIR)/$(OUT) tests/vm/check-kernels.sh $(VM_KERNELS) || rc=1; \
	UBLK_BIN=$(CURDIR)/$(OUT) bats tests/crash || rc=1; exit $$rc

check-vm-kernel: deps all $(TEST_BINS)
	$(Q)UBLK_VM_KERNEL=$(or $(UBLK_VM_KERNEL),6.1) UBLK_BIN=$(CURDIR)/$(OUT) tests/vm/check-kernel.sh

# The VM suite on a host whose cores are all busy (tests/loaded.sh): the
# tests' deadlines catch hangs, and must not fail on a slow machine.
check-loaded: deps all $(TEST_BINS)
	$(Q)rc=0; for k in $(VM_KERNELS); do \
		UBLK_VM_KERNEL=$$k UBLK_BIN=$(CURDIR)/$(OUT) UBLK_VM_TIMEOUT=$${UBLK_VM_TIMEOUT:-7200} \
			UBLK_VM_TEST_TIMEOUT=$${UBLK_VM_TEST_TIMEOUT:-1800} \
			tests/loaded.sh tests/vm/check-kernel.sh || rc=1; \
	done; exit $$rc

demo: deps all
	$(Q)if [ -e /dev/ublk-control ]; then UBLK_BIN=$(CURDIR)/$(OUT) tests/demo.sh; else tests/vm/run.sh tests/demo.sh; fi

soak: deps all
	$(Q)UBLK_VM_TIMEOUT=14400 tests/vm/run.sh env UBLK_RECOVERY_KILLS=$${UBLK_RECOVERY_KILLS:-250} \
		bats --show-output-of-passing-tests --filter 'through' tests/vm/recovery.bats
	$(Q)tests/vm/run.sh env UBLK_ADD_DEL_CYCLES=300 bats --filter 'add/del cycles' tests/vm/overlay.bats
	$(Q)for i in 1 2 3 4 5; do bats tests/crash || exit 1; done

# BENCH_AB=REV: REV (a commit, tag or branch) is built from git into
# $(OUT)/bench-ab and measured in the same boot, as @REV.
bench: deps all
	$(Q)set -e; ab=; if [ -n "$(BENCH_AB)" ]; then \
		ab=$(CURDIR)/$(OUT)/bench-ab; rm -rf "$$ab" "$$ab.src"; mkdir -p "$$ab.src"; \
		git archive "$(BENCH_AB)" | tar -x -C "$$ab.src"; \
		$(MAKE) --no-print-directory -C "$$ab.src" OUT="$$ab" all; fi; \
	boot=$$(tests/bench-boot-image.sh) || { echo "bench: no boot image: the boot rows are skipped" >&2; boot=; }; \
	UBLK_BIN=$(CURDIR)/$(OUT) tests/vm/run.sh env BENCH_RUNTIME=$${BENCH_RUNTIME:-5} UBLK_BIN_B="$$ab" \
		BENCH_ROUNDS="$${BENCH_ROUNDS:-}" BENCH_AB_LABEL="$(BENCH_AB)" BENCH_BOOT_IMG="$$boot" BENCH_ONLY="$${BENCH_ONLY:-}" \
		BENCH_BOOT_CHUNK="$${BENCH_BOOT_CHUNK:-}" BENCH_BOOT_ROUNDS="$${BENCH_BOOT_ROUNDS:-}" \
		BENCH_BOOT_DELAY_MS="$${BENCH_BOOT_DELAY_MS:-}" tests/bench.sh

DOCS = README.md $(wildcard docs/*.md)

# One bash completion file, linked under each tool's name (bash-completion
# loads a command's completion by its name).
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(BASHCOMPDIR) \
		$(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(UDEVRULESDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0644 $(TOOLS:%=man/%.8) $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 completions/ublk-tools.bash $(DESTDIR)$(BASHCOMPDIR)/ublk-add
	for t in $(filter-out ublk-add,$(TOOLS)); do ln -sf ublk-add $(DESTDIR)$(BASHCOMPDIR)/$$t; done
	install -m 0644 completions/_ublk-tools $(DESTDIR)$(ZSHCOMPDIR)/_ublk-tools
	sed 's|@BINDIR@|$(BINDIR)|g' dist/ublk-pool-watch.service >$(DESTDIR)$(UNITDIR)/ublk-pool-watch.service
	sed 's|@BINDIR@|$(BINDIR)|g' dist/59-ublk-tools.rules >$(DESTDIR)$(UDEVRULESDIR)/59-ublk-tools.rules
	chmod 0644 $(DESTDIR)$(UNITDIR)/ublk-pool-watch.service $(DESTDIR)$(UDEVRULESDIR)/59-ublk-tools.rules
	install -m 0644 dist/ublk-tools.tmpfiles $(DESTDIR)$(TMPFILESDIR)/ublk-tools.conf
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/

# A Debian package of what install puts in place (dist/make-deb.sh), in $(OUT).
deb: all
	$(Q)dist/make-deb.sh $(CURDIR)/$(OUT) $(CURDIR)/$(OUT)

uninstall:
	rm -f $(TOOLS:%=$(DESTDIR)$(BINDIR)/%) $(TOOLS:%=$(DESTDIR)$(MANDIR)/man8/%.8) \
		$(TOOLS:%=$(DESTDIR)$(BASHCOMPDIR)/%) $(DESTDIR)$(ZSHCOMPDIR)/_ublk-tools \
		$(DESTDIR)$(UNITDIR)/ublk-pool-watch.service $(DESTDIR)$(UDEVRULESDIR)/59-ublk-tools.rules \
		$(DESTDIR)$(TMPFILESDIR)/ublk-tools.conf
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -rf build build-san build-fuzz

include tests/fuzz/fuzz.mk

# libFuzzer harnesses (tests/fuzz/README.md), included by the Makefile.
#   make fuzz [FUZZ_SECONDS=60]   build, then run each harness that long
#   make fuzz-build               build only, into build-fuzz/
#   make fuzz-seeds               rewrite tests/fuzz/corpus/ with the project's writers
# The library is compiled again with clang, with coverage for libFuzzer
# and ASan+UBSan, into its own folder: gcc builds are not touched.

FUZZ_OUT       = build-fuzz
FUZZ_SECONDS  ?= 60
FUZZ_HARNESSES = diff diff_v3 e2b e2b_section e2b_store cache_map cache_live state http http_response ctlsock options trace chunkcache mountinfo
FUZZ_SAN       = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_BINS      = $(FUZZ_HARNESSES:%=$(FUZZ_OUT)/fuzz_%)
FUZZ_MAKE      = $(MAKE) --no-print-directory $(if $(filter 1,$(V)),,-s) OUT=$(FUZZ_OUT) CC=clang SAN=0 \
		 SANFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer-no-link"

.PHONY: fuzz fuzz-build fuzz-seeds
fuzz-build:
	$(Q)$(FUZZ_MAKE) $(FUZZ_BINS)

fuzz: fuzz-build
	$(Q)tests/fuzz/run.sh --seconds $(FUZZ_SECONDS) --bin $(FUZZ_OUT) $(FUZZ_HARNESSES)

fuzz-seeds:
	$(Q)$(FUZZ_MAKE) $(FUZZ_OUT)/make-seeds
	$(Q)$(FUZZ_OUT)/make-seeds tests/fuzz/corpus

$(FUZZ_OUT)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/checksums.c tests/fuzz/*.h $(FUZZ_OUT)/libublktools.a $(HDRS)
	$(call quiet,FUZZ,$@)$(CC) $(CFLAGS) -Itests/fuzz -fsanitize=fuzzer -o $@ $< tests/fuzz/checksums.c \
		$(FUZZ_OUT)/libublktools.a $(LDLIBS)

$(FUZZ_OUT)/make-seeds: tests/fuzz/make-seeds.c tests/fuzz/*.h $(FUZZ_OUT)/libublktools.a $(HDRS)
	$(call quiet,CC,$@)$(CC) $(CFLAGS) -Itests/fuzz -o $@ $< $(FUZZ_OUT)/libublktools.a $(LDLIBS)

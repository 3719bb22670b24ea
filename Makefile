# Stride - build the library, the `stride` program, the example and the tests.
#   make                 library + program + example
#   make test            build and run every test (summary: "N passed, N failed"), the kernel
#                        tests also against the AVX-512 kernels emulated (avx512-emulated)
#   make sanitize-test   the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer
#   make install PREFIX=/usr/local
#   make bench           Stride vs PyTorch benchmark (not a test)
#   make profile         build/bench/layer_prof: time per layer of a CNN training step

PREFIX   ?= /usr/local
BUILD    ?= build
CC       ?= cc
PKGS     := zlib cairo pangocairo libpng libjpeg
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT      ?= -O3
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS   ?= $(OPT) -g
# -ffp-contract=off (already the default for -std=c11, stated for anyone who changes that): some
# fused kernels recompute a value another pass computed (a batch norm's output, for the ReLU's
# mask) and rely on getting the same float, which an FMA in one place and not the other breaks.
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -fno-math-errno -ffp-contract=off -fopenmp -fPIC -Iinclude -Isrc $(PKG_CFLAGS) $(CFLAGS) $(EXTRA_CFLAGS)
LDLIBS   := $(PKG_LIBS) -lm -fopenmp $(EXTRA_LDFLAGS)

LIB_SRC  := $(sort $(wildcard src/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:cli/%.c=$(BUILD)/obj/cli/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
EX_SRC   := $(sort $(wildcard examples/*.c))
EX_BIN   := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)

LIB      := $(BUILD)/libstride.a
PROG     := $(BUILD)/stride

.PHONY: all test avx512-emulated sanitize-test install clean bench profile
all: $(LIB) $(PROG) $(EX_BIN) $(TEST_BIN)

# conv.c moves feature-map rows of 7 to 32 floats with vector loops; GCC would turn those loops
# into memmove calls, which cost more than the copies themselves at that size.
$(BUILD)/obj/conv.o: ALL_CFLAGS += -fno-tree-loop-distribute-patterns
$(BUILD)/obj/%.o: src/%.c include/stride.h src/*.h | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/obj/cli/%.o: cli/%.c include/stride.h $(wildcard cli/*.h) | $(BUILD)/obj/cli
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(LIB): $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
$(PROG): $(CLI_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@
$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) src/model.h $(LIB) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) $< $(LIB) $(LDLIBS) -o $@
$(BUILD)/examples/%: examples/%.c $(LIB) | $(BUILD)/examples
	$(CC) $(ALL_CFLAGS) $< $(LIB) $(LDLIBS) -o $@
$(BUILD)/obj $(BUILD)/obj/cli $(BUILD)/tests $(BUILD)/examples:
	mkdir -p $@

# The AVX-512 kernels checked on any CPU with AVX2 and FMA: the kernel tests built again with
# gemm_avx512.c compiled against SIMDe's AVX-512 intrinsics (libsimde-dev; see that file), so
# that they run every configuration at the AVX-512 level too (its 8 x 32 tiles included).
# (x86 only: elsewhere there are no x86 kernels to check.)
EMU_BUILD := $(BUILD)-avx512emu
ifneq ($(filter x86_64-% i686-% i586-%,$(shell $(CC) -dumpmachine)),)
EMU_TESTS := $(addprefix $(EMU_BUILD)/tests/,test_gemm test_fast test_team test_models test_alloc)
endif
ifeq ($(ST_EMULATE_AVX512),1)
$(BUILD)/obj/gemm_avx512.o: ALL_CFLAGS += -DST_EMULATE_AVX512 -mavx2 -mfma -Wno-psabi
$(BUILD)/obj/cpu.o: ALL_CFLAGS += -DST_EMULATE_AVX512
endif
avx512-emulated:
ifneq ($(EMU_TESTS),)
	@echo '#include <simde/x86/avx512.h>' | $(CC) $(ALL_CFLAGS) -E -x c - >/dev/null 2>&1 || \
	    { echo "make: the AVX-512 kernel tests need SIMDe's headers: apt-get install libsimde-dev"; exit 1; }
	$(MAKE) BUILD=$(EMU_BUILD) ST_EMULATE_AVX512=1 $(EMU_TESTS)
endif

test: all avx512-emulated
	BUILD=$(BUILD) EXTRA_TESTS="$(EMU_TESTS)" tests/run.sh

# fontconfig keeps its font cache for the life of the process (reported by LeakSanitizer at exit
# of the programs that draw text): that library's allocations alone are suppressed.
sanitize-test:
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 $(MAKE) BUILD=build-san OPT=-O1 EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" EXTRA_LDFLAGS="-fsanitize=address,undefined" test

install: $(LIB) $(PROG)
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/stride.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(PROG) $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBS@|$(PKG_LIBS) -lm -fopenmp|' stride.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/stride.pc

bench: all
	bench/run

profile: $(BUILD)/bench/layer_prof
$(BUILD)/bench/layer_prof: bench/layer_prof.c src/*.h $(LIB)
	mkdir -p $(BUILD)/bench
	$(CC) $(ALL_CFLAGS) $< $(LIB) $(LDLIBS) -o $@

clean:
	rm -rf build build-san build-avx512emu build-san-avx512emu

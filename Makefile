# muxlab — build, grade, self-test, docs and benchmarks.
#
#   make                 build every lab, solution, fixture and the grader
#   make grade           grade every lab in labs/ (LAB=NN for one, SERVER=path for any binary)
#   make test            self-test: solutions pass, broken fixtures and skeletons fail
#   make docs            build the documentation into build/docs
#   make bench           measure the I/O models side by side (build/bench)
#   make sanitize        the same self-test with ASan/UBSan (build/asan) and TSan (build/tsan)
#
# Every program is one .cpp file: labs/NN-name/X.cpp and solutions/NN-name/X.cpp
# build to build/{labs,solutions}/NN-name/X. A broken variant of a solution is a
# patch: tests/fixtures/NN-name/BUG.patch applies to solutions/NN-name/server.cpp
# and builds to build/tests/fixtures/NN-name/BUG; a standalone fixture is a .cpp.

CXX      ?= g++
BUILD    ?= build
SAN      ?=
OPT      ?= -O2
CXXFLAGS ?= $(OPT) -g
CXXFLAGS += -std=c++17 -Wall -Wextra -Werror -pthread -MMD -MP
CPPFLAGS += -Icommon/include -Itests
LDFLAGS  += -pthread
ifneq ($(SAN),)
CXXFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SAN)
endif
NPROC    := $(shell nproc 2>/dev/null || echo 2)

.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SECONDARY:
.SECONDEXPANSION:
.SUFFIXES:

# ---- the shared helper library ------------------------------------------------
COMMON_SRC := $(wildcard common/src/*.cpp)
COMMON_OBJ := $(COMMON_SRC:%.cpp=$(BUILD)/%.o)
COMMON_LIB := $(BUILD)/common/libmuxlab.a

$(COMMON_LIB): $(COMMON_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.cpp
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

# ---- labs and solutions: one program per .cpp ----------------------------------
LAB_SRC       := $(wildcard labs/*/*.cpp)
SOLUTION_SRC  := $(wildcard solutions/*/*.cpp)
LAB_BIN       := $(LAB_SRC:%.cpp=$(BUILD)/%)
SOLUTION_BIN  := $(SOLUTION_SRC:%.cpp=$(BUILD)/%)

$(BUILD)/labs/%: $(BUILD)/labs/%.o $(COMMON_LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/solutions/%: $(BUILD)/solutions/%.o $(COMMON_LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Stage 11 talks to io_uring through liburing.
$(BUILD)/labs/11-%: LDLIBS += -luring
$(BUILD)/solutions/11-%: LDLIBS += -luring
$(BUILD)/tests/fixtures/11-%: LDLIBS += -luring

# A skeleton is written half-way: unused parameters, variables and functions
# are expected there, not mistakes, so labs build without those warnings.
LAB_WARNINGS := -Wno-unused-parameter -Wno-unused-variable -Wno-unused-but-set-variable \
                -Wno-unused-function -Wno-unused-const-variable -Wno-unused-label \
                -Wno-unused-local-typedefs -Wno-unused-private-field
$(BUILD)/labs/%.o: CXXFLAGS += $(LAB_WARNINGS)

# The skeletons in labs/ are generated from the solutions' hole markers
# (tools/skeleton.cpp); the self-test fails when one is stale.
SKELETON := $(BUILD)/tools/skeleton
skeletons: $(SKELETON)
	$(SKELETON) --all

# ---- broken variants (test fixtures) --------------------------------------------
# NAME.patch: a one-bug patch against the stage's reference. NAME.partial: a
# half-done lab, the skeleton with the holes on its `fill:` line filled in.
# NAME.cpp: a program of its own. Each builds to build/tests/fixtures/NN-name/NAME.
FIXTURE_PATCHES  := $(wildcard tests/fixtures/*/*.patch)
FIXTURE_PARTIALS := $(wildcard tests/fixtures/*/*.partial)
FIXTURE_SRC      := $(wildcard tests/fixtures/*/*.cpp)
FIXTURE_BIN      := $(FIXTURE_PATCHES:%.patch=$(BUILD)/%) $(FIXTURE_PARTIALS:%.partial=$(BUILD)/%) \
                    $(FIXTURE_SRC:%.cpp=$(BUILD)/%)

# A copy of the stage's reference folder, patched (a patch may touch any of its files).
$(BUILD)/tests/fixtures/%.src/server.cpp: tests/fixtures/%.patch $$(wildcard solutions/$$(*D)/*)
	@rm -rf $(@D) && mkdir -p $(@D) && cp solutions/$(*D)/* $(@D)/
	@echo "patch solutions/$(*D) < $<"
	@sed -E 's#^(---|\+\+\+) ([ab]/)?solutions/[^/]+/#\1 #' $< | patch --quiet --force -d $(@D) -p0 \
	    || { rm -rf $(@D); echo "$<: the patch no longer applies to solutions/$(*D)" >&2; exit 1; }
# The same folder as a student would have it with some TODOs done.
$(BUILD)/tests/fixtures/%.src/server.cpp: tests/fixtures/%.partial $(SKELETON) $$(wildcard solutions/$$(*D)/*)
	@rm -rf $(@D) && mkdir -p $(@D)
	@echo "skeleton --fill \"$$(sed -n 's/^fill: *//p' $<)\" solutions/$(*D) ($<)"
	@fill=$$(sed -n 's/^fill: *//p' $<); \
	for file in solutions/$(*D)/*; do \
	    $(SKELETON) --fill "$$fill" $$file -o $(@D)/$$(basename $$file) || { rm -rf $(@D); exit 1; }; \
	done
$(BUILD)/tests/fixtures/%.o: $(BUILD)/tests/fixtures/%.src/server.cpp
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) $(LAB_WARNINGS) -c $< -o $@
$(BUILD)/tests/fixtures/%: $(BUILD)/tests/fixtures/%.o $(COMMON_LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@
.PRECIOUS: $(BUILD)/tests/fixtures/%.src/server.cpp

# ---- the harness and the grader ---------------------------------------------------
HARNESS_SRC := $(wildcard tests/harness/*.cpp)
STAGE_SRC   := $(wildcard tests/stages/*/*.cpp)
RUBRICS     := $(sort $(wildcard tests/stages/*/rubric.txt))
GRADER_SRC  := $(wildcard tests/grader/*.cpp)
UNIT_SRC    := $(wildcard tests/unit/*.cpp)
HARNESS_LIB := $(BUILD)/tests/libharness.a
GRADER      := $(BUILD)/tests/muxlab-grade
UNIT_TESTS  := $(BUILD)/tests/unit-tests
RUBRIC_CPP  := $(BUILD)/tests/rubric_text.cpp
GTEST_LIBS  := -lgtest

$(HARNESS_LIB): $(HARNESS_SRC:%.cpp=$(BUILD)/%.o)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

# The rubric is compiled in, so a grader binary carries its own points: the
# rubric.txt of every stage folder, in lab order.
$(RUBRIC_CPP): $(RUBRICS)
	@mkdir -p $(@D)
	{ echo 'namespace muxlab::grader { extern const char kRubricText[] = R"rubric('; \
	  cat $^; echo ')rubric"; }'; } > $@

$(GRADER): $(STAGE_SRC:%.cpp=$(BUILD)/%.o) $(GRADER_SRC:%.cpp=$(BUILD)/%.o) \
           $(RUBRIC_CPP:%.cpp=%.o) $(HARNESS_LIB) $(COMMON_LIB)
	$(CXX) $(LDFLAGS) $^ $(GTEST_LIBS) -o $@.tmp && mv -f $@.tmp $@  # never half-written for a running self-test

$(UNIT_TESTS): $(UNIT_SRC:%.cpp=$(BUILD)/%.o) $(BUILD)/tests/grader/rubric.o \
               $(RUBRIC_CPP:%.cpp=%.o) $(HARNESS_LIB) $(COMMON_LIB)
	$(CXX) $(LDFLAGS) $^ $(GTEST_LIBS) -lgtest_main -o $@

$(BUILD)/tests/rubric_text.o: $(RUBRIC_CPP)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

TOOLS_SRC := $(wildcard tools/*.cpp)
TOOLS_BIN := $(TOOLS_SRC:%.cpp=$(BUILD)/%)
$(BUILD)/tools/%: $(BUILD)/tools/%.o $(COMMON_LIB)
	$(CXX) $(LDFLAGS) $^ -o $@

# ---- top-level targets --------------------------------------------------------------
.PHONY: all labs solutions fixtures skeletons grader deps grade test check sanitize docs bench clean

all: solutions labs fixtures grader $(UNIT_TESTS) $(TOOLS_BIN)
labs: $(LAB_BIN)
solutions: $(SOLUTION_BIN)
fixtures: $(FIXTURE_BIN)
grader: $(GRADER)

# Installs what the kit needs on Debian when it is missing (or says what to run).
deps:
	@tools/install-deps

# Grade the labs (or one binary). The labs build in parallel, each into its
# own log; a lab that does not compile is graded as failing, with the
# compiler's message (never from an older binary left from a build that worked).
LAB    ?=
SERVER ?=
GRADE_FLAGS ?=
GRADE_LABS = $(if $(LAB),$(filter $(BUILD)/labs/$(LAB)%,$(LAB_BIN)),$(LAB_BIN))
grade: deps
	@$(MAKE) --no-print-directory -j$(NPROC) grader $(COMMON_LIB)
ifeq ($(SERVER),)
	@printf '%s\n' $(GRADE_LABS) | xargs -P $(NPROC) -I{} sh -c \
	    'mkdir -p $$(dirname {}) && { $(MAKE) --no-print-directory {} > {}.log 2>&1 || { rm -f {}; cat {}.log >&2; }; }'
	@not_built=""; for program in $(GRADE_LABS); do \
	    [ -x "$$program" ] || not_built="$$not_built --not-built $$(basename $$(dirname $$program))=$$program.log"; \
	done; \
	$(GRADER) --labs-dir $(BUILD)/labs $(if $(LAB),--lab $(LAB)) $$not_built $(GRADE_FLAGS)
else
	@$(GRADER) $(if $(LAB),--lab $(LAB)) --server $(SERVER) $(GRADE_FLAGS)
endif

# The self-test: unit tests, then every check in tools/selftest, in parallel.
test check: deps
	@[ -x tools/selftest ] || { echo "make test is the kit's self-test; a course repository has none: run make check-setup and make grade"; exit 2; }
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@tools/selftest --build $(BUILD) --jobs $$(( $(NPROC) * 2 ))  # most checks wait on deadlines, not the CPU

# ASan/UBSan: the harness, the grader, every reference solution and every
# skeleton, which must run clean (a sanitizer report fails the test that saw
# it). Not the broken fixtures: a sanitizer changes what a broken server does
# (it aborts at the first overflow, runs slower, takes more memory), so they
# prove their tests in the plain build. TSan: the stage that shares memory
# between threads (03); TSan's own handling of signals in forked children
# makes it the wrong tool for the process stages.
sanitize: deps
	@$(MAKE) --no-print-directory -j$(NPROC) BUILD=build/asan SAN=address,undefined OPT=-O1 all
	@tools/selftest --build build/asan --jobs $$(( $(NPROC) * 2 )) --filter '^(harness|skeleton|solution)'
	@$(MAKE) --no-print-directory -j$(NPROC) BUILD=build/tsan SAN=thread OPT=-O1 all
	@MUXLAB_TIME_SCALE=3 tools/selftest --build build/tsan --filter '^solution 03-threads/'

clean:
	rm -rf build

# Stage-independent extras keep their rules beside their files: bench/, course/, docs/.
-include $(wildcard bench/*.mk course/*.mk docs/*.mk)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

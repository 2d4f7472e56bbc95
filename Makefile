# Top-level build: the eventstore extension through PGXS, plus the test, demo
# and bench entry points.  New C files, SQL scripts, tests and specs are picked
# up by wildcards: adding one needs no edit here.

EXTENSION  = eventstore birdwatch
MODULE_big = eventstore
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard extension/*.c)))
DATA       = $(sort $(wildcard sql/*--*.sql))
EXTRA_CLEAN = $(addsuffix .control,$(EXTENSION)) results output_iso regression.diffs \
              regression.out test/out

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -Iextension
# -Wno-unused-parameter: PostgreSQL's own headers have unused parameters.
PG_CFLAGS = -std=c11 -Wall -Wextra -Wno-unused-parameter -Werror

# pg_regress: test/sql/*.sql against expected/*.out.
REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test
# isolation specs: test/specs/*.spec against expected/*.out.
ISOLATION      = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --outputdir=.

# SANITIZE=1 (make test SANITIZE=1): eventstore.so built with UBSan, any
# finding fatal (it pulls libubsan in; the server itself is not
# instrumented), the daemon with ASan and UBSan (workers/Makefile), and the
# tests told so: the valgrind checks run the daemon bare, ASan's and UBSan's
# reports go to files that test/run counts as failures, as it does any
# "runtime error:" in the server log.
ifeq ($(SANITIZE),1)
PG_CFLAGS  += -fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
PG_LDFLAGS += -fsanitize=undefined
export EVENTSTORE_SANITIZE = 1
export ASAN_OPTIONS = detect_leaks=1:halt_on_error=1:exitcode=86:strict_string_checks=1
export UBSAN_OPTIONS = print_stacktrace=1:halt_on_error=1:exitcode=86
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks neither headers nor flags: rebuild when either changes.  The
# stamp holds the flags SANITIZE adds, rewritten when they change.
FLAGS_STAMP := .build-flags
build_flags := $(PG_CFLAGS) $(PG_LDFLAGS)
ifneq ($(file <$(FLAGS_STAMP)),$(build_flags))
$(file >$(FLAGS_STAMP),$(build_flags))
endif
$(OBJS): extension/eventstore.h Makefile $(FLAGS_STAMP)

# The libpq daemon has its own Makefile; build, install and clean it along.
.PHONY: workers install-workers clean-workers
all: workers
workers:
	$(MAKE) -C workers
install: install-workers
install-workers: workers
	$(MAKE) -C workers install
clean: clean-workers
clean-workers:
	$(MAKE) -C workers clean

# PGXS installs top-level control files; ours live in control/.
%.control: control/%.control
	cp $< $@
all: $(addsuffix .control,$(EXTENSION))

.PHONY: deps test demo tour bench soak fuzz
deps:
	@scripts/install-deps

# The whole suite in a throwaway cluster; ends with "N passed, N failed".
# SANITIZE=1: built and run with the sanitizers (see above).
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install >/dev/null
	@test/run

# The bird-watching story end to end; "tour" walks through eventstore alone.
demo: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install >/dev/null
	@scripts/demo

tour: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install >/dev/null
	@scripts/tour

bench: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install >/dev/null
	@bench/run

# The soak alone, at full length: DURATION seconds of load and faults
# (make test runs a short one).
DURATION ?= 600
soak: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install >/dev/null
	@SOAK_DURATION=$(DURATION) scripts/with-cluster eventstore_test -- test/soak

# The daemon's libFuzzer harnesses (workers/fuzz/), each for FUZZ_SECONDS
# (make test runs them 10 s each, in test/shell/fuzz_daemon.sh).
FUZZ_SECONDS ?= 300
fuzz: deps
	@$(MAKE) --no-print-directory -C workers fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

# Packages.  build/ holds what deb and dist make, ignored by git through a
# .gitignore of its own.
#   make deb    the Debian packages postgresql-15-eventstore and
#               eventstore-worker (debian/), built from a copy of the tree
#               by debian/build-debs, into build/deb/
#   make dist   the PGXN release build/eventstore-<version>.zip, the version
#               of META.json: git archive of HEAD (commit first)
# (the first "version" of META.json is the release's, before "provides")
DIST_VERSION = $(shell grep -m1 '"version"' META.json | sed 's/.*: *"\([^"]*\)".*/\1/')
.PHONY: deb dist build-dir
build-dir:
	@mkdir -p build && echo '*' >build/.gitignore
deb: deps build-dir
	@debian/build-debs build/deb
dist: build-dir
	git archive --format=zip --prefix=eventstore-$(DIST_VERSION)/ \
		-o build/eventstore-$(DIST_VERSION).zip HEAD

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

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks neither headers nor flags: rebuild when either changes.
$(OBJS): extension/eventstore.h Makefile

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

.PHONY: deps test demo tour bench soak
deps:
	@scripts/install-deps

# The whole suite in a throwaway cluster; ends with "N passed, N failed".
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

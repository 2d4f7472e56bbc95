#!/bin/sh
# Random mutation testing of the envelope validator against an oracle written
# from EVENTS.md (see test/fuzz_envelope.py); FUZZ_SEED and FUZZ_CASES
# override the seed and the number of cases.
exec /usr/bin/python3 "$(dirname "$0")/../fuzz_envelope.py"

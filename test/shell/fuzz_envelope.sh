#!/bin/sh
# Differential fuzz of the envelope validator: 100,000 generated and mutated
# envelopes checked by eventstore.is_valid/validate against an independent
# oracle (docs/schemas/envelope.schema.json through python3-jsonschema, plus
# RFC 3339 and size checks); see test/fuzz_envelope.py.  FUZZ_SEED and
# FUZZ_CASES override the seed and the number of cases.
exec /usr/bin/python3 "$(dirname "$0")/../fuzz_envelope.py"

#!/usr/bin/python3
"""test/fuzz_envelope.py: differential fuzz of the envelope validator.

Generates FUZZ_CASES documents (default 100000) from a fixed seed (FUZZ_SEED,
default 20240613) and checks eventstore.is_valid and eventstore.validate on
each against an independent oracle.  Any disagreement is a failure.

The oracle (nothing in it comes from extension/*.c):

  1. Parsing as jsonb parses.  The document is bytes; PostgreSQL refuses
     invalid UTF-8 and NUL bytes (22021), JSON syntax errors, NaN/Infinity
     and lone UTF-16 surrogates (22P02), the escape \\u0000 (22P05), numbers
     outside numeric's range (22003: more than 131072 digits before the
     decimal point or 16383 after it, or an exponent beyond INT_MAX/2), and
     nesting deeper than max_stack_depth allows (54001).  parse_like_jsonb
     decodes strictly, parses with Python's json (duplicate members: the last
     wins, as in jsonb; numbers kept as text) and then looks for the rest.
     Documents the oracle refuses must be refused by the server with one of
     the SQLSTATEs it expects, and the session must go on; documents it
     accepts must parse.  Nesting deeper than MUST_PARSE_DEPTH may also be
     refused with 54001 (the exact depth depends on max_stack_depth; with
     the default 2MB, 12,000 levels parse and 14,000 do not): then the case
     is counted as refused, not compared.  Refused documents are generated
     on purpose, not filtered: that the server refuses them cleanly and
     goes on is part of the test.
  2. The rules: docs/schemas/envelope.schema.json (JSON Schema 2020-12,
     evaluated by jsonschema's Draft202012Validator through test/schemas.py)
     plus two checks the schema cannot make, kept apart: rfc3339_date_time
     (the schema's format "date-time", plugged in as a FormatChecker by
     test/schemas.py) and the size limit
     eventstore.max_event_bytes, which is about the jsonb value: its size is
     measured by the server (pg_column_size of the parsed jsonb, less the
     varlena header) and compared here with the limit in force.
  The validator's DETAIL must name one of the fields the oracle finds
  broken (which one, when several are, is not checked).

The cases (see CATEGORIES): valid envelopes, each rule broken one at a time,
chains of random mutations, byte-level mutations of the text (syntax errors,
invalid UTF-8, NUL, bad escapes), odd Unicode (astral, combining, RTL, zero
width, lookalikes, escaped or raw), numbers at the edges (numeric's limits,
version numbers around 2^31), duplicate members, deep nesting (up to 200,000
levels), huge strings and wide values (around the 1 MiB limit and up to
4 MB), and the size limit to the byte (eventstore.max_event_bytes set, for
that case, to the document's own size plus -2..2 bytes).

All cases are loaded with psql's \\copy (as bytea, so that any bytes get
through) into a temporary table and checked in ONE psql session by one
PL/pgSQL loop: per case, convert_from(doc, 'UTF8')::jsonb, is_valid,
validate, in one exception block that records where it stopped and the
SQLSTATE.  Generating and parsing take most of the time (about 30 s in
all for 100,000 cases).  Prints TAP:

    1..4
    ok 1 - 100000 cases: the server parses as jsonb exactly what the oracle parses
    ok 2 - is_valid agrees with the oracle (JSON Schema, RFC 3339, size)
    ok 3 - validate raises 22023, naming a broken field, exactly when is_valid is false
    ok 4 - the server is still up

with a few disagreements (truncated) and the seed on failure.  Runs against
the database of the libpq environment (PGHOST, PGPORT, PGDATABASE, ...), in
which it re-creates the extension eventstore.  stdlib and jsonschema only.
"""

import collections
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True     # no test/__pycache__ left in the work tree
import schemas  # noqa: E402

SEED = int(os.environ.get("FUZZ_SEED", "20240613"))
CASES = int(os.environ.get("FUZZ_CASES", "100000"))
MAX_EVENT_BYTES = 1024 * 1024          # set in the session: the default
MAX_INT32 = 2147483647
# Nesting up to this depth must parse whatever max_stack_depth is (the
# default 2MB allows over 10,000 levels).
MUST_PARSE_DEPTH = 1000
ENVELOPE_MEMBERS = ("id", "type", "version", "data", "metadata")

# ---------------------------------------------------------------------------
# Oracle, part 1: what jsonb accepts
# ---------------------------------------------------------------------------

NUMERIC_MAX_INT_DIGITS = 131072         # PostgreSQL docs, "Arbitrary Precision Numbers"
NUMERIC_MAX_SCALE = 16383
NUMERIC_MAX_EXPONENT = 2147483647 // 2  # numeric_in refuses |exponent| >= INT_MAX / 2
NUMBER_RE = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?[0-9]+))?")
SURROGATE_RE = re.compile("[\ud800-\udfff]")
SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")


def numeric_accepts(text):
    """Whether PostgreSQL's numeric holds this JSON number."""
    m = NUMBER_RE.fullmatch(text)
    int_part, frac, exp_text = m.group(1), m.group(2) or "", m.group(3) or "0"
    digits = exp_text.lstrip("+-").lstrip("0")
    if len(digits) > 12:
        return False
    exponent = int(exp_text)
    if abs(exponent) >= NUMERIC_MAX_EXPONENT:
        return False
    if len(frac) - exponent > NUMERIC_MAX_SCALE:
        return False
    significant = (int_part + frac).lstrip("0")
    if significant:
        first = len(int_part + frac) - len(significant)     # first non-zero digit
        int_digits = len(int_part) + exponent - first
        if int_digits > NUMERIC_MAX_INT_DIGITS:
            return False
    return True


class ParseResult:
    """A document as jsonb would see it: doc (None if refused), the SQLSTATEs
    a refusal may raise (empty: must parse), and its nesting depth."""

    def __init__(self, doc=None, refusal=(), depth=0):
        self.doc = doc
        self.refusal = frozenset(refusal)
        self.depth = depth


class JsonNumber:
    """A JSON number, kept as its text: the envelope never wants one, and
    numeric's range is not Python's."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def _refuse_constant(name):
    raise ValueError("JSON has no %s" % name)


def _scan(doc):
    """(depth, SQLSTATEs of strings jsonb refuses) of a parsed document,
    without recursion: documents may be nested 200,000 deep."""
    depth = 0
    codes = set()
    stack = [(doc, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            depth = max(depth, d)
            for k, x in v.items():
                stack.append((k, d))
                stack.append((x, d + 1))
        elif isinstance(v, list):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in v)
        elif isinstance(v, str):
            if "\x00" in v:
                codes.add("22P05")
            if SURROGATE_RE.search(v):
                codes.add("22P02")
    return depth, codes


def parse_like_jsonb(raw):
    """Parses bytes as PostgreSQL's jsonb input does, as a ParseResult."""
    if b"\x00" in raw:
        return ParseResult(refusal={"22021"})
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ParseResult(refusal={"22021"})
    bad_numbers = []

    def number(s):
        if not numeric_accepts(s):
            bad_numbers.append(s)
        return JsonNumber(s)

    try:
        doc = json.loads(text, object_pairs_hook=dict, parse_int=number,
                         parse_float=number, parse_constant=_refuse_constant)
    except ValueError:
        # The server stops at the first error, which may come before the
        # one Python reports.
        codes = {"22P02", "22P05", "22003"}
        if text.count("[") + text.count("{") > MUST_PARSE_DEPTH:
            codes.add("54001")
        return ParseResult(refusal=codes)
    # Only \u escapes make NULs or surrogates (the text is valid UTF-8), and
    # only a text with many brackets can nest deep: scan only those.
    depth, codes = 0, set()
    if ("\\u0000" in text or SURROGATE_ESCAPE_RE.search(text)
            or text.count("[") + text.count("{") > MUST_PARSE_DEPTH):
        depth, codes = _scan(doc)
    if bad_numbers:
        codes.add("22003")
    if codes:
        return ParseResult(refusal=codes, depth=depth)
    return ParseResult(doc=doc, depth=depth)


# ---------------------------------------------------------------------------
# Oracle, part 2: the rules
# ---------------------------------------------------------------------------

def load_schema_validator():
    return schemas.validator("envelope.schema.json")


def broken_fields(validator, doc, size, limit):
    """The set of fields whose rule the document breaks (empty: valid), named
    as the server names them: "id", "metadata.time", an unknown member's
    name, or "" for the event as a whole (not an object, too big)."""
    broken = set()
    if size > limit:
        broken.add("")
    for error in validator.iter_errors(doc):
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            prefix = path + "." if path else ""
            broken.update(prefix + name for name in error.validator_value
                          if name not in error.instance)
        elif error.validator == "additionalProperties":
            broken.update(name for name in error.instance if name not in ENVELOPE_MEMBERS)
        else:
            broken.add(path)
    return broken


# ---------------------------------------------------------------------------
# Generation: values
# ---------------------------------------------------------------------------

rnd = random.Random(SEED)


class Raw:
    """JSON text written as it is (numbers at the edges, pre-encoded huge
    strings, deep values)."""

    def __init__(self, text):
        self.text = text


class Members:
    """A JSON object as a list of members, so that a name may repeat."""

    def __init__(self, pairs):
        self.pairs = list(pairs)


HEX = "0123456789abcdefABCDEF"
ODD_CHARS = (
    " \t\n\r\x01\x1f\x7f\"\\/'{}[]:,.+-_0123456789TtZz"
    "\u00a0\u00e9\u00fc\u00df\u0130\u0131\u03a9\u0661\u0663\u06f1\u0966"
    "\u2028\u2029\u200b\u200d\ufeff\uff10\uff11\u3000\u9ce5\ufffd"
    "\U0001F426\U0001D7D8\U00010000\U0010FFFD")
# Unicode that is easy to get wrong: combining marks, right-to-left text and
# controls, zero width characters, astral characters (UTF-16 surrogate pairs
# when escaped), noncharacters, private use, variation and tag characters.
ODD_UNICODE = [
    "e\u0301", "\u0301", "a\u0308\u0323", "\u20dd", "\u05d0\u05d1", "\u0627\u0644", "\u202e", "\u200f",
    "\u202b", "\u2066", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\U0001F426",
    "\U0001F469\u200d\U0001F52C", "\U00010000", "\U0010FFFF", "\U0001D7D8", "\ufffe", "\uffff",
    "\U0001FFFF", "\u2028", "\u2029", "\u00a0", "\uff10", "\u0966", "\ufffd", "\ue000",
    "\ufe0f", "\U000E0041", "\u00e9", "\u1e9e", "\u0130", "\u03a3", "\u4e2d\u6587", "\U00020000",
]
# Names that look like envelope members but are not.
LOOKALIKE_NAMES = [
    "\uff49\uff44", "id\u200b", "\u0456d", "Id", "ID", "\ufeffid", "i\u200dd", "type\u0301",
    "dat\u0430", "metadata ", " metadata", "versi\u03bfn", "\u202eid", "t\u0443pe", "DATA",
    "i\u0307d", "id\u0000", "Metadata", "versio\u0144",
]
NAMES = ["id", "type", "version", "data", "metadata", "ID", "Id", "TYPE", "Version",
         "id ", " id", "metadata2", "meta", "source", "time", "name", "specversion",
         "\u00efd", "\uff49\uff44", "i\u200bd", "", " ", "x" * 70,
         "\u00e9" * 40, "\U0001F426", "\"", "\\", "topic", "stream"]
# Digits and letters that look like ASCII ones.
LOOKALIKE_DIGITS = ["\uff10", "\uff11", "\u0661", "\u0660", "\u0966", "\u06f1", "\U0001D7D8",
                    "\u00b9", "\u2460", "\u0430", "\u0435", "\u0441", "\uff41", "\u2212"]


def rand_char():
    r = rnd.random()
    if r < 0.5:
        return rnd.choice(ODD_CHARS)
    if r < 0.8:
        return chr(rnd.randint(0x20, 0x7e))
    while True:
        c = rnd.randint(1, 0x10FFFF)
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def rand_string(maxlen=12):
    r = rnd.random()
    if r < 0.1:
        return ""
    if r < 0.11:
        return rnd.choice("ab\u00e9\U0001F426") * rnd.randint(100, 3000)
    return "".join(rand_char() for _ in range(rnd.randint(1, maxlen)))


def rand_odd_string(maxparts=6):
    return "".join(rnd.choice(ODD_UNICODE) if rnd.random() < 0.6 else rand_char()
                   for _ in range(rnd.randint(1, maxparts)))


def rand_uuid():
    h = "%032x" % rnd.getrandbits(128)
    u = "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
    r = rnd.random()
    if r < 0.1:
        return u.upper()
    if r < 0.2:
        return "".join(c.upper() if rnd.random() < 0.5 else c for c in u)
    if r < 0.22:
        return rnd.choice(["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"])
    return u


INT32_EDGES = [0, 1, 9, 10, 99, 100, 999999999, 1000000000, 2000000000, 2147483639, 2147483640,
               2147483646, MAX_INT32]
BEYOND_INT32 = [MAX_INT32 + 1, MAX_INT32 + 9, 2147483650, 2147483700, 2147484647, 2147493647,
                3000000000, 4294967295, 4294967296, 4294967297, 9999999999, 10000000000,
                9223372036854775807, 9223372036854775808, 18446744073709551615,
                18446744073709551616, 10 ** 30]


def rand_version_number():
    r = rnd.random()
    if r < 0.5:
        return rnd.randint(0, 20)
    if r < 0.75:
        return rnd.choice(INT32_EDGES)
    return rnd.randint(0, MAX_INT32)


def rand_offset():
    r = rnd.random()
    if r < 0.4:
        return rnd.choice("Zz")
    return "%s%02d:%02d" % (rnd.choice("+-"), rnd.choice([rnd.randint(0, 23), 0, 23]),
                            rnd.choice([rnd.randint(0, 59), 0, 59]))


def days_in(year, month):
    """Days of a month of the proleptic Gregorian calendar (year 0 is leap)."""
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def rand_valid_time():
    year = rnd.choice([rnd.randint(0, 9999), rnd.randint(1970, 2100), 2000, 2024, 1900, 0, 9999, 2400])
    month = 2 if rnd.random() < 0.2 else rnd.randint(1, 12)
    last = days_in(year, month)
    day = rnd.choice([rnd.randint(1, last), last, 1])
    second = rnd.choice([rnd.randint(0, 59), 59, 60, 0])
    frac = ""
    if rnd.random() < 0.4:
        frac = "." + "".join(rnd.choices("0123456789", k=rnd.choice([1, 2, 3, 6, 9, 30, 1000])))
    return "%04d-%02d-%02d%s%02d:%02d:%02d%s%s" % (
        year, month, day, rnd.choice("TTTt"), rnd.randint(0, 23), rnd.randint(0, 59), second,
        frac, rand_offset())


def rand_fields_time():
    """A date-time of the right shape with field values often out of range."""
    def field(lo, hi, edges):
        return rnd.choice([rnd.randint(lo, hi), rnd.choice(edges), rnd.randint(0, 99)])
    year = rnd.choice([rnd.randint(0, 9999), 1900, 2000, 2023, 2024, 2100, 2400, 0])
    frac = rnd.choice(["", "", ".5", ".", ".123456789", ".x"])
    off = rnd.choice(["Z", "z", "+%02d:%02d" % (field(0, 23, [23, 24, 99]), field(0, 59, [59, 60]))])
    return "%04d-%02d-%02dT%02d:%02d:%02d%s%s" % (
        year, field(1, 12, [0, 1, 2, 12, 13]), field(1, 28, [0, 28, 29, 30, 31, 32]),
        field(0, 23, [0, 23, 24]), field(0, 59, [59, 60]), field(0, 59, [59, 60, 61]),
        frac, off)


TRICKY_TIMES = [
    "now", "epoch", "yesterday", "today", "infinity", "", "1985-04-12", "1985-04-12 23:20:50Z",
    "1985-04-12T23:20:50", "1985-04-12T23:20:50+2:00", "1985-04-12T23:20:50+24:00",
    "1985-04-12T23:20:50+0200", "1985-04-12T23:20:50.Z", "1985-04-12T23:20:50Z ",
    " 1985-04-12T23:20:50Z", "1985-04-12T23:20Z", "85-04-12T23:20:50Z", "+1985-04-12T23:20:50Z",
    "19850-04-12T23:20:50Z", "1985-04-12T23:20:50,5Z", "1985-04-12T23:20:50 UTC",
    "1985-04-12T23:20:50+02:00:00", "1985-W15-5T23:20:50Z", "1985-102T23:20:50Z",
    "1985-04-12T23:20:50.52+02:00", "1990-12-31T23:59:60Z", "2024-02-29T00:00:00Z",
    "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
    "0000-02-29T00:00:00Z", "1985-04-12T23:20:50-00:00", "1985-04-12t23:20:50z",
    "\uff11985-04-12T23:20:50Z", "1985-04-12T23:20:5\u0661Z", "1985-04-12T23:20:50\u2212" + "01:00",
    "1985-04-12\u00a023:20:50Z", "1985-04-12T23:20:50Z\n", "1985-04-12T23:20:50Z\u0000",
    "1985-04-31T00:00:00Z", "1985-00-12T00:00:00Z", "1985-13-01T00:00:00Z", "1985-04-00T00:00:00Z",
    "1985-04-12T24:00:00Z", "1985-04-12T23:60:00Z", "1985-04-12T23:59:61Z", "1985-04-12T23:20:50+23:60",
    "1985-04-12T23:20:50.+01:00", "1985-04-12T23:20:50Z\u200b", "9999-12-31T23:59:60.999999999-23:59",
    "0000-01-01T00:00:00+00:00", "-001-01-01T00:00:00Z", "1985-4-12T23:20:50Z",
]

TRICKY_VERSIONS = [
    "1", "1.", ".1", "01.0", "1.01", "00.0", "0.00", "+1.0", "-1.0", " 1.0", "1.0 ", "1.0.0",
    "1.x", "2147483648.0", "0.2147483648", "2147483647.2147483647", "4294967296.0",
    "9999999999.0", "99999999999999999999.1", "0.0", "1.0", "10.10", "1,0", "", ".", "1e0.0",
    "\u0661.\u0660", "\uff11.\uff10", "1.0\n", "0x1.0", "1.0\u200b", "18446744073709551616.0",
    "0.18446744073709551616", "02147483647.0", "2147483647.02147483647", "1.0\u0000", "1\u00b7 0",
    "\n1.0", "1..0", "1.-0", "1.+0", "\u00bd.0", "1 .0", "1. 0",
]

# JSON numbers: those numeric holds, and those it refuses.
EDGE_NUMBERS = ["0", "-0", "-0.0", "0e0", "0E-0", "1", "-1", "2147483647", "2147483648", "-2147483649",
                "9223372036854775807", "9223372036854775808", "-9223372036854775809",
                "18446744073709551616", "1e308", "1.7976931348623157e308", "5e-324", "1e400", "-1e400",
                "1e-400", "1E+2", "0.1", "1e131071", "-9.99e131071", "1e-16383", "-1e-16383",
                "0.0001e131075", "0e200000", "0.000e5", "123456789012345678901234567890.5"]
# Numbers written out with many digits: long texts, so used sparingly.
LONG_NUMBERS = ["9" * 1000, "0." + "0" * 16382 + "1", "1" + "0" * 131071,
                "0." + "0" * 16384, "1" + "0" * 131072]
REFUSED_NUMBERS = ["1e131072", "-1e131072", "1.5e131072", "1e-16384", "0e-16384", "-0.0e-16383",
                   "1e1073741823", "0e1073741823", "1e-1073741823", "1e99999999999999999999",
                   "123.4e-16383", "1e-131072"]


def rand_edge_number():
    """A JSON number near numeric's limits (the oracle decides which ones fit)."""
    r = rnd.random()
    if r < 0.01:
        return rnd.choice(LONG_NUMBERS)
    if r < 0.4:
        return rnd.choice(EDGE_NUMBERS)
    if r < 0.55:
        return rnd.choice(REFUSED_NUMBERS)
    mantissa = str(rnd.randint(1, 10 ** rnd.randint(1, 30)))
    if rnd.random() < 0.5:
        cut = rnd.randint(1, len(mantissa))
        mantissa = mantissa[:cut] + ("." + mantissa[cut:] if cut < len(mantissa) else "")
    if rnd.random() < 0.5:
        exponent = NUMERIC_MAX_INT_DIGITS - rnd.randint(-3, 35)
    else:
        exponent = -NUMERIC_MAX_SCALE + rnd.randint(-35, 3)
    return "%s%s%s%+d" % (rnd.choice(["", "-"]), mantissa, rnd.choice("eE"), exponent)


def rand_scalar():
    r = rnd.random()
    if r < 0.2:
        return None
    if r < 0.35:
        return rnd.choice([True, False])
    if r < 0.5:
        return Raw(rnd.choice(EDGE_NUMBERS[:20]))
    if r < 0.65:
        return rnd.randint(-10**6, 10**6)
    return rand_string()


def rand_value(depth=0):
    r = rnd.random()
    if depth > 3 or r < 0.6:
        return rand_scalar()
    if r < 0.8:
        return [rand_value(depth + 1) for _ in range(rnd.randint(0, 4))]
    return {rand_string(6): rand_value(depth + 1) for _ in range(rnd.randint(0, 4))}


def rand_non_object():
    r = rnd.random()
    if r < 0.3:
        return [rand_value(1) for _ in range(rnd.randint(0, 3))]
    return rand_scalar()


def rand_data():
    r = rnd.random()
    if r < 0.3:
        return {}
    if r < 0.4:
        v = rand_scalar()
        for _ in range(rnd.randint(5, 60)):
            v = {rand_string(3) or "k": v} if rnd.random() < 0.6 else [v]
        return {"nested": v}
    return {"user": {"id": rand_uuid()}, "image": {"url": "https://example.org/%d.jpg" % rnd.randint(0, 999)},
            "rating": rnd.randint(1, 5), rand_string(5): rand_value(1)}


def valid_envelope():
    md = {"source": rnd.choice(["services/TickAPI", "services/ScoreModel", "services/Notifier",
                                "services/AuthAPI", "services/AdminAPI", "x", " ",
                                "services/Vogel-\u00fc-\u9ce5", "\U0001F426"]),
          "time": rand_valid_time()}
    for _ in range(rnd.choice([0, 0, 0, 1, 2])):
        md[rand_string(8) or "k"] = rand_value(1)
    doc = {
        "id": rand_uuid(),
        "type": rnd.choice(["new", "update", "delete", "email", "login", "x", " ", "\u00e9",
                            "\U0001F426", "a\"b\\c", "new\n"]),
        "version": "%d.%d" % (rand_version_number(), rand_version_number()),
        "data": rand_data(),
        "metadata": md,
    }
    if rnd.random() < 0.3:                       # member order does not matter
        items = list(doc.items())
        rnd.shuffle(items)
        doc = dict(items)
    return doc


# ---------------------------------------------------------------------------
# Generation: JSON text
# ---------------------------------------------------------------------------

SHORT_ESCAPES = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
MUST_ESCAPE_RE = re.compile('["\\\\\x00-\x1f\ud800-\udfff]')
# Longer strings get \\u escapes in this many first characters only: the
# escaping goes character by character.
ESCAPE_PREFIX = 256


def escape_char(ch, optional):
    """ch as JSON string content: escaped if it must be, else if optional
    (then as \\u, or \\/ for a slash)."""
    c = ord(ch)
    if ch == '"':
        return '\\"'
    if ch == "\\":
        return "\\\\"
    if c < 0x20:
        short = SHORT_ESCAPES.get(ch)
        return short if short and rnd.random() < 0.7 else "\\u%04x" % c
    if 0xD800 <= c <= 0xDFFF:
        return "\\u%04x" % c
    if not optional:
        return ch
    if ch == "/" and rnd.random() < 0.5:
        return "\\/"
    if c < 0x10000:
        return ("\\u%04x" if rnd.random() < 0.5 else "\\u%04X") % c
    c -= 0x10000
    return "\\u%04x\\u%04x" % (0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF))


def escape_required(s):
    return MUST_ESCAPE_RE.sub(lambda m: escape_char(m.group(), False), s)


def json_string_body(s, p_escape):
    """The inside of a JSON string literal; p_escape: share of characters
    written as \\u escapes.  Surrogates (lone ones, on purpose) and control
    characters are always escaped."""
    if not p_escape:
        return escape_required(s)
    head = "".join(escape_char(ch, rnd.random() < p_escape) for ch in s[:ESCAPE_PREFIX])
    return head + escape_required(s[ESCAPE_PREFIX:])


def json_string(s, p_escape):
    return '"' + json_string_body(s, p_escape) + '"'


def ws():
    if rnd.random() < 0.85:
        return ""
    return rnd.choice([" ", "  ", "\n", "\t", "\r\n", " \t "])


def dump(v, p_escape):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json_string(v, p_escape)
    if isinstance(v, list):
        return "[" + ws() + ("," + ws()).join(dump(x, p_escape) for x in v) + ws() + "]"
    pairs = v.pairs if isinstance(v, Members) else v.items()
    items = [ws() + json_string(k, p_escape) + ws() + ":" + ws() + dump(x, p_escape) + ws()
             for k, x in pairs]
    return "{" + ",".join(items) + "}" if items else "{" + ws() + "}"


def encode(doc):
    return dump(doc, rnd.choice([0, 0, 0, 0, 0.05, 0.3, 1])).encode("utf-8")


# ---------------------------------------------------------------------------
# Generation: the categories
# ---------------------------------------------------------------------------

def mutate_string(s):
    """One character-level change of a string."""
    op = rnd.randrange(9)
    i = rnd.randint(0, len(s))
    j = min(i + 1, len(s))
    if op == 0 and s:
        return s[:i] + rand_char() + s[j:]                        # replace
    if op == 1:
        return s[:i] + rand_char() + s[i:]                        # insert
    if op == 2 and s:
        return s[:i] + s[j:]                                      # delete
    if op == 3:
        return s.swapcase()
    if op == 4 and s:
        return s[:i] + rnd.choice(HEX) + s[j:]                    # replace by hex
    if op == 5 and s:
        return s[:i] + rnd.choice("0123456789") + s[j:]           # replace by digit
    if op == 6:
        return s[:i]                                              # truncate
    if op == 7:
        return rnd.choice([" ", "\t", "\n", "\u00a0", "{", "}", "0"]) + s + rnd.choice(["", " ", "}", "0"])
    return s + s[i:]                                              # duplicate a tail


def mutate(doc):
    """Applies one random mutation to the envelope (a dict), or returns a new document."""
    op = rnd.randrange(20)
    md = doc.get("metadata")
    if op == 0 and doc:
        del doc[rnd.choice(list(doc))]
    elif op == 1 and doc:
        doc[rnd.choice(list(doc))] = rand_non_object() if rnd.random() < 0.7 else rand_value()
    elif op == 2:
        doc[rnd.choice(NAMES) if rnd.random() < 0.6 else rand_string(8)] = rand_value()
    elif op in (3, 4) and isinstance(doc.get("id"), str):
        doc["id"] = mutate_string(doc["id"])
    elif op == 5:
        doc["id"] = rnd.choice(["{%s}" % rand_uuid(), rand_uuid().replace("-", ""), rand_uuid() + " ",
                                "urn:uuid:" + rand_uuid(), "%x" % rnd.getrandbits(128), ""])
    elif op in (6, 7) and isinstance(doc.get("version"), str):
        doc["version"] = mutate_string(doc["version"])
    elif op == 8:
        numbers = BEYOND_INT32 + INT32_EDGES
        doc["version"] = rnd.choice(TRICKY_VERSIONS) if rnd.random() < 0.7 else \
            "%d.%d" % (rnd.choice(numbers), rnd.choice(numbers))
    elif op == 9:
        old = doc["type"] if isinstance(doc.get("type"), str) else "new"
        doc["type"] = rnd.choice(["", rand_string(), mutate_string(old)])
    elif op == 10:
        doc["data"] = rnd.choice([rand_non_object(), rand_data(), {"s": rand_string(40)}])
    elif op == 11:
        doc["metadata"] = rand_non_object()
    elif op in (12, 13, 14) and isinstance(md, dict):
        r = rnd.random()
        if r < 0.35 and isinstance(md.get("time"), str):
            md["time"] = mutate_string(md["time"])
        elif r < 0.6:
            md["time"] = rand_fields_time()
        elif r < 0.8:
            md["time"] = rnd.choice(TRICKY_TIMES)
        else:
            md["time"] = rand_non_object()
    elif op == 15 and isinstance(md, dict):
        key = rnd.choice(["source", "time"])
        r = rnd.random()
        if r < 0.4:
            md.pop(key, None)
        elif r < 0.7:
            md[key] = rand_non_object()
        else:
            md["source"] = rnd.choice(["", rand_string()])
    elif op == 16 and isinstance(md, dict):
        md[rnd.choice(NAMES) if rnd.random() < 0.5 else rand_string(8)] = rand_value()
    elif op == 17:
        return rand_non_object()
    elif op == 18:
        doc["data"] = {rand_string(10) or "k": rand_string(200) for _ in range(rnd.randint(1, 5))}
    else:
        doc["version"] = "%d.%d" % (rand_version_number(), rand_version_number())
    return doc


def gen_valid():
    """A valid envelope, its text with random whitespace and escapes."""
    return encode(valid_envelope())


def _wrong_type_value(allow_string):
    kinds = ["null", "true", "false", "number", "array", "object"] + (["string"] if allow_string else [])
    kind = rnd.choice(kinds)
    return {"null": None, "true": True, "false": False, "string": rand_string(),
            "number": Raw(rnd.choice(["1", "0", "-1", "1.0", "2147483647", "1e400", "-0"])),
            "array": [rand_value(2) for _ in range(rnd.randint(0, 2))],
            "object": {rand_string(4): rand_value(2) for _ in range(rnd.randint(0, 2))}}[kind]


def break_id(doc):
    u = rand_uuid()
    doc["id"] = rnd.choice([
        "{%s}" % u, u.replace("-", ""), u + " ", " " + u, u + "\n", "urn:uuid:" + u, u[:-1], u + "0",
        u[:8] + u[9:13] + "-" + u[8] + u[13:], u.replace("-", "_"), u[:35] + "g", u[:35] + "G",
        u[:10] + rnd.choice(LOOKALIKE_DIGITS) + u[11:], u[:14] + "\u0430" + u[15:], "", "-" * 36,
        u.replace("-", "") + "----", "%x" % rnd.getrandbits(128), u[:18] + u[19:] + "0",
        u + "\u200b", u.upper().replace("A", "\uff21"), mutate_string(u)])


def break_version(doc):
    r = rnd.random()
    if r < 0.5:
        doc["version"] = rnd.choice(TRICKY_VERSIONS)
    elif r < 0.8:
        big = rnd.choice(BEYOND_INT32)
        small = rand_version_number()
        doc["version"] = "%d.%d" % ((big, small) if rnd.random() < 0.5 else (small, big))
    else:
        doc["version"] = mutate_string(doc["version"])


def break_time(doc):
    r = rnd.random()
    md = doc["metadata"]
    if r < 0.4:
        md["time"] = rnd.choice(TRICKY_TIMES)
    elif r < 0.75:
        md["time"] = rand_fields_time()
    else:
        md["time"] = mutate_string(md["time"])


# Each rule broken alone: (the field, how).
RULE_BREAKERS = [
    ("id", lambda d: d.pop("id")),
    ("id", lambda d: d.__setitem__("id", _wrong_type_value(False))),
    ("id", break_id),
    ("type", lambda d: d.pop("type")),
    ("type", lambda d: d.__setitem__("type", _wrong_type_value(False))),
    ("type", lambda d: d.__setitem__("type", "")),
    ("version", lambda d: d.pop("version")),
    ("version", lambda d: d.__setitem__("version", _wrong_type_value(False))),
    ("version", break_version),
    ("data", lambda d: d.pop("data")),
    ("data", lambda d: d.__setitem__("data", rnd.choice([
        None, True, Raw("0"), Raw("{}".join("[]")), [], [{}], "{}", rand_string()]))),
    ("metadata", lambda d: d.pop("metadata")),
    ("metadata", lambda d: d.__setitem__("metadata", rnd.choice([
        None, False, Raw("1"), [], [d["metadata"]], dump(d["metadata"], 0), rand_string()]))),
    ("metadata.source", lambda d: d["metadata"].pop("source")),
    ("metadata.source", lambda d: d["metadata"].__setitem__("source", _wrong_type_value(False))),
    ("metadata.source", lambda d: d["metadata"].__setitem__("source", "")),
    ("metadata.time", lambda d: d["metadata"].pop("time")),
    ("metadata.time", lambda d: d["metadata"].__setitem__("time", _wrong_type_value(False))),
    ("metadata.time", break_time),
    ("unknown", lambda d: d.__setitem__(
        rnd.choice([rnd.choice(NAMES[5:]), rnd.choice(LOOKALIKE_NAMES), rand_string(8) or "k"]),
        rand_value())),
    ("not an object", lambda d: d.clear()),
]


def gen_one_rule_broken():
    """A valid envelope with one rule broken (the rules in turn)."""
    doc = valid_envelope()
    _field, breaker = rnd.choice(RULE_BREAKERS)
    breaker(doc)
    if not doc:                                  # "not an object"
        return encode(rand_non_object())
    return encode(doc)


def gen_mutated():
    """A valid envelope after one to four random mutations."""
    doc = valid_envelope()
    for _ in range(rnd.randint(1, 4)):
        doc = mutate(doc)
        if not isinstance(doc, dict):
            break
    return encode(doc)


INVALID_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\x81", b"\xe0\x80\xaf",
                b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
                b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\xc3", b"\xf0\x9f\x90"]
BAD_SNIPPETS = [b"\\u0000", b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\udc00\\ud800", b"\\ud83d",
                b"\\u12", b"\\u00g0", b"\\x41", b"\\'", b"\\U0001F426", b"\\", b"\\a", b"\\0",
                b"NaN", b"Infinity", b"-Infinity", b"undefined", b"True", b"nul", b"'x'", b",",
                b"//c\n", b"/*c*/", b"\xef\xbb\xbf", b"\x00", b"\x01", b"\t", b"\n", b"\x7f",
                b"01", b"1.", b".5", b"-", b"+1", b"1e", b"0x10", b"1_000", b"\\u00e9", b"\\/",
                b"\\ud83d\\udc26"]


def gen_text_mutated():
    """The text of an envelope after one to three byte-level edits."""
    doc = valid_envelope()
    if rnd.random() < 0.3:
        doc = mutate(doc)
    raw = bytearray(encode(doc))
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randrange(8)
        i = rnd.randint(0, len(raw))
        if op == 0 and raw:
            del raw[min(i, len(raw) - 1)]
        elif op == 1:
            raw[i:i] = bytes([rnd.choice(b'{}[],:"\\ 0aeE-.') if rnd.random() < 0.6 else rnd.randrange(256)])
        elif op == 2 and i < len(raw):
            raw[i] = rnd.randrange(256)
        elif op == 3:
            del raw[i:]
        elif op == 4:
            raw[i:i] = rnd.choice(INVALID_UTF8)
        elif op == 5:
            raw[i:i] = rnd.choice(BAD_SNIPPETS)
        elif op == 6 and raw:
            j = rnd.randint(i, min(len(raw), i + 20))
            raw[i:i] = raw[i:j]
        else:
            # around the document: a BOM, whitespace JSON does not know, ...
            raw = bytearray(rnd.choice([b"\xef\xbb\xbf", b" ", b"\x0b", b"\x0c", b"\xc2\xa0", b"", b"[", b"\n"])) \
                + raw + rnd.choice([b"", b" ", b"\n\r\t", b"}", b"\x00", b"x", b"\x0c"])
    return bytes(raw)


def gen_odd_unicode():
    """An envelope full of odd Unicode: valid where it is only content,
    invalid in names and digits, refused when it is \\u0000 or a lone
    surrogate."""
    doc = valid_envelope()
    md = doc["metadata"]
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randrange(10)
        if op == 0:
            doc["type"] = rand_odd_string()
        elif op == 1:
            md["source"] = rand_odd_string()
        elif op == 2:
            md[rand_odd_string(3)] = rand_odd_string(10)
        elif op == 3:
            doc["data"] = {rand_odd_string(3): rand_odd_string(10) for _ in range(rnd.randint(1, 4))}
        elif op == 4:
            doc[rnd.choice(LOOKALIKE_NAMES)] = rand_value()
        elif op == 5:
            u = doc["id"]
            i = rnd.randrange(36)
            doc["id"] = u[:i] + rnd.choice(LOOKALIKE_DIGITS + ODD_UNICODE) + u[i + 1:]
        elif op == 6:
            doc["version"] = rnd.choice(LOOKALIKE_DIGITS) + ".0" if rnd.random() < 0.5 else \
                "1." + rnd.choice(LOOKALIKE_DIGITS + ODD_UNICODE)
        elif op == 7:
            t = md["time"]
            i = rnd.randrange(len(t))
            md["time"] = t[:i] + rnd.choice(LOOKALIKE_DIGITS + ODD_UNICODE) + t[i + 1:]
        elif op == 8:
            where = rnd.choice(["type", "source", "extra"])
            bad = rnd.choice(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800"])
            if where == "type":
                doc["type"] = "a" + bad + "b"
            elif where == "source":
                md["source"] = bad
            else:
                md["x" + bad] = 1
        else:
            doc["data"] = {"s": "".join(ODD_UNICODE)}
    return dump(doc, rnd.choice([0, 0.3, 1])).encode("utf-8")


def gen_edge_numbers():
    """Numbers at the edges: numeric's limits in content, numbers where the
    envelope wants strings, version numbers around 2^31."""
    doc = valid_envelope()
    op = rnd.randrange(4)
    if op == 0:
        doc["data"] = {"n%d" % i: Raw(rand_edge_number()) for i in range(rnd.randint(1, 3))}
        if rnd.random() < 0.3:
            doc["data"]["list"] = [Raw(rand_edge_number()) for _ in range(3)]
    elif op == 1:
        doc["metadata"][rnd.choice(["n", "count", "seq"])] = Raw(rand_edge_number())
    elif op == 2:
        field = rnd.choice(["id", "type", "version", "metadata.source", "metadata.time"])
        number = Raw(rnd.choice(["1.0", "2147483647.2147483647", "1e400"] + EDGE_NUMBERS[:15]))
        if field.startswith("metadata."):
            doc["metadata"][field[9:]] = number
        else:
            doc[field] = number
    else:
        a = rnd.choice(INT32_EDGES + BEYOND_INT32)
        b = rnd.choice(INT32_EDGES + BEYOND_INT32)
        pad = "0" * rnd.choice([0, 0, 0, 1, 5])
        doc["version"] = rnd.choice(["%d.%d", pad + "%d.%d", "%d." + pad + "%d"]) % (a, b)
    return encode(doc)


def gen_duplicate_members():
    """An envelope where a member (top-level or in metadata) appears twice:
    jsonb keeps the last one."""
    doc = valid_envelope()
    target = doc if rnd.random() < 0.6 else doc["metadata"]
    name = rnd.choice(list(target))
    other = rnd.choice([rand_value(), rand_non_object(), target[name], None, ""])
    pairs = list(target.items())
    if rnd.random() < 0.5:
        pairs.insert(0, (name, other))           # overridden by the real one
    else:
        pairs.append((name, other))              # overrides the real one
    members = Members(pairs)
    if target is doc:
        return encode(members)
    doc["metadata"] = members
    return encode(doc)


def deep_text(depth):
    """A value nested depth deep, arrays and objects mixed, as text."""
    opens, closes = [], []
    for _ in range(depth):
        if rnd.random() < 0.5:
            opens.append("[")
            closes.append("]")
        else:
            opens.append('{"%s":' % rnd.choice(["k", "a", "", "\\u00e9", "\U0001F426"]))
            closes.append("}")
    return "".join(opens) + rnd.choice(["1", "null", '"x"', "[]", "{}"]) + "".join(reversed(closes))


def gen_deep():
    """Deep nesting, mostly in data: up to 1000 levels always parses; deeper
    may hit max_stack_depth (a clean 54001 refusal is fine)."""
    r = rnd.random()
    if r < 0.75:
        depth = rnd.randint(100, MUST_PARSE_DEPTH)
    elif r < 0.97:
        depth = rnd.randint(MUST_PARSE_DEPTH, 15000)
    else:
        depth = rnd.randint(20000, 200000)
    deep = Raw(deep_text(depth))
    doc = valid_envelope()
    where = rnd.random()
    if where < 0.75:
        doc["data"] = {"deep": deep}
    elif where < 0.85:
        doc["metadata"]["deep"] = deep
    elif where < 0.9:
        doc["unknown"] = deep
    elif where < 0.95:
        return ("[" * depth + "]" * depth).encode()
    else:
        doc["data"] = deep
    text = encode(doc)
    if rnd.random() < 0.05:
        text = text[:-2]                          # unbalanced
    return text


def huge_string_literal(nbytes):
    """A JSON string literal of about nbytes bytes (in jsonb: escapes count as
    the character they stand for), made of a repeated odd chunk."""
    chunk = json_string_body(rand_odd_string(12) + "abcdefgh" * rnd.randint(0, 8), rnd.choice([0, 0.5]))
    size = max(1, len(chunk.encode("utf-8")))
    return '"' + chunk * max(1, nbytes // size) + '"'


def gen_huge():
    """Huge strings and wide values: around eventstore.max_event_bytes, and
    well above it."""
    doc = valid_envelope()
    doc["data"] = {}
    op = rnd.randrange(9)
    if op == 0:
        # around the limit: strings are stored as UTF-8 (escapes decoded),
        # plus ~100 bytes for the rest: some are above, some below
        doc["data"] = {"blob": Raw('"' + "x" * (MAX_EVENT_BYTES - rnd.randint(-100, 400)) + '"')}
    elif op == 1:
        doc["data"] = {"blob": Raw(huge_string_literal(rnd.randint(1, 4) * MAX_EVENT_BYTES))}
    elif op == 2:
        doc["type"] = Raw(huge_string_literal(rnd.randint(100000, 900000)))
    elif op == 3:
        doc["metadata"]["source"] = Raw(huge_string_literal(rnd.randint(100000, 900000)))
    elif op == 4:
        t = rand_valid_time()
        doc["metadata"]["time"] = Raw('"' + t[:-1] + huge_string_literal(rnd.randint(100000, 900000))[1:])
    elif op == 5:
        doc["id"] = Raw(huge_string_literal(rnd.randint(100000, 900000)))
    elif op == 6:
        text = encode(doc)
        name = huge_string_literal(rnd.randint(1000, 500000))
        return text[:-1] + b"," + name.encode("utf-8") + b":1}"
    elif op == 7:
        doc["data"] = Raw("{" + ",".join('"k%d":%d' % (i, i) for i in range(rnd.randint(10000, 60000))) + "}")
    else:
        doc["data"] = {"a": Raw("[" + ",".join(["1"] * rnd.randint(10000, 200000)) + "]")}
    return encode(doc)


def gen_size_limit():
    """An envelope checked with eventstore.max_event_bytes set to its own
    jsonb size plus a small delta (see SESSION_SQL): the limit's edge, to
    the byte.  Returns (text, delta)."""
    doc = valid_envelope()
    if rnd.random() < 0.2:
        doc = mutate(doc)
    delta = rnd.choice([-2, -1, -1, 0, 0, 1, 2, rnd.randint(-1000, 1000)])
    return encode(doc), delta


# name: (generator, share of the cases); deep and huge get a fixed count.
CATEGORIES = collections.OrderedDict([
    ("valid", (gen_valid, 14)),
    ("one rule broken", (gen_one_rule_broken, 30)),
    ("random mutations", (gen_mutated, 24)),
    ("byte mutations", (gen_text_mutated, 10)),
    ("odd unicode", (gen_odd_unicode, 9)),
    ("edge numbers", (gen_edge_numbers, 9)),
    ("duplicate members", (gen_duplicate_members, 4)),
    ("size limit", (gen_size_limit, 2)),
])


def generate_cases(n):
    """n cases as (category, bytes, limit delta or None), in a shuffled order."""
    n_huge = min(n // 10, max(4, n // 4000))
    n_deep = n // 250
    plan = ["huge"] * n_huge + ["deep"] * n_deep
    weights = [w for _, w in CATEGORIES.values()]
    plan += rnd.choices(list(CATEGORIES), weights, k=n - len(plan))
    rnd.shuffle(plan)
    gens = {name: g for name, (g, _) in CATEGORIES.items()}
    gens["huge"] = gen_huge
    gens["deep"] = gen_deep
    cases = []
    for c in plan:
        made = gens[c]()
        cases.append((c,) + (made if isinstance(made, tuple) else (made, None)))
    return cases


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------

SESSION_SQL = r"""
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
SET eventstore.max_event_bytes = %(limit)d;
CREATE TEMP TABLE fuzz_cases (n integer PRIMARY KEY, doc bytea NOT NULL, limit_delta integer);
\copy fuzz_cases FROM '%(file)s'
CREATE TEMP TABLE fuzz_results (n integer, stage text, valid boolean, size integer,
                                max_bytes integer, sqlstate text, message text, detail text);
DO $fuzz$
DECLARE
    r record;
    doc jsonb;
    stage text;
    valid boolean;
    size integer;
    max_bytes integer;
    st text;
    msg text;
    det text;
BEGIN
    FOR r IN SELECT c.n, c.doc, c.limit_delta FROM fuzz_cases c ORDER BY c.n LOOP
        stage := 'parse';
        valid := NULL;
        size := NULL;
        max_bytes := %(limit)d;
        st := NULL;
        msg := NULL;
        det := NULL;
        BEGIN
            doc := convert_from(r.doc, 'UTF8')::jsonb;
            -- VARSIZE less VARHDRSZ, of a value fresh from jsonb_in: doc may
            -- have gone through a tuple, and then has a 1-byte header if small
            size := pg_column_size(convert_from(r.doc, 'UTF8')::jsonb) - 4;
            IF r.limit_delta IS NOT NULL THEN
                -- rolled back with the block or reset below
                max_bytes := greatest(64, size + r.limit_delta);
                PERFORM set_config('eventstore.max_event_bytes', max_bytes::text, false);
            END IF;
            stage := 'is_valid';
            valid := eventstore.is_valid(doc);
            stage := 'validate';
            PERFORM eventstore.validate(doc);
            stage := 'done';
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                                    det = PG_EXCEPTION_DETAIL;
        END;
        IF r.limit_delta IS NOT NULL THEN
            PERFORM set_config('eventstore.max_event_bytes', '%(limit)d', false);
        END IF;
        INSERT INTO fuzz_results VALUES (r.n, stage, valid, size, max_bytes, st,
                                         left(msg, 200), left(det, 300));
    END LOOP;
END
$fuzz$;
-- hex: psql's table output drops characters it deems invalid (U+10FFFF)
SELECT json_build_array(n, stage, valid, size, max_bytes, sqlstate,
                        encode(convert_to(message, 'UTF8'), 'hex'),
                        encode(convert_to(detail, 'UTF8'), 'hex'))::text
  FROM fuzz_results ORDER BY n;
"""

Result = collections.namedtuple("Result", "stage valid size max_bytes sqlstate message detail")


def from_hex(text):
    return None if text is None else bytes.fromhex(text).decode("utf-8")


def run_session(cases):
    """Checks every case in one psql session: {n: Result}, psql's status and stderr."""
    with tempfile.TemporaryDirectory(prefix="fuzz_envelope.") as tmp:
        path = os.path.join(tmp, "cases.tsv")
        with open(path, "w", encoding="ascii") as f:
            for i, (_, raw, delta) in enumerate(cases):
                f.write("%d\t\\\\x%s\t%s\n" % (i, raw.hex(), "\\N" if delta is None else delta))
        os.chmod(tmp, 0o755)
        os.chmod(path, 0o644)
        proc = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                              input=SESSION_SQL % {"file": path.replace("'", "''"),
                                                   "limit": MAX_EVENT_BYTES},
                              capture_output=True, text=True, encoding="utf-8", errors="replace")
    results = {}
    if proc.returncode == 0:
        for line in proc.stdout.split("\n"):
            if line.startswith("["):
                n, stage, valid, size, max_bytes, sqlstate, message, detail = json.loads(line)
                results[n] = Result(stage, valid, size, max_bytes, sqlstate,
                                    from_hex(message), from_hex(detail))
    return results, proc.returncode, proc.stderr


DETAIL_RE = re.compile(r'(?:Field "(.*?)" (?:is missing|must |is not an envelope member)|The event )', re.S)


def server_field(detail):
    """The field a detail names ("" for the event as a whole), or None."""
    if detail is None:
        return None
    m = DETAIL_RE.match(detail)
    if not m:
        return None
    return m.group(1) or ""


def field_matches(field, broken):
    if field in broken:
        return True
    # long unknown member names are clipped and end with "..."
    return field.endswith("...") and any(b.startswith(field[:-3]) for b in broken)


def server_is_up():
    up = subprocess.run(["psql", "-X", "-At", "-c", "SELECT 1"], capture_output=True, text=True)
    return up.stdout.strip() == "1", up.stderr.strip()


# ---------------------------------------------------------------------------
# Comparison and report
# ---------------------------------------------------------------------------

def show(raw, limit=240):
    text = raw.decode("utf-8", errors="backslashreplace")
    return json.dumps(text[:limit] + ("...(%d bytes)" % len(raw) if len(text) > limit else ""))


def fields_text(broken):
    """The broken fields for a message, long names clipped."""
    return ", ".join(json.dumps(f if len(f) < 40 else f[:40] + "...") for f in sorted(broken))


def report(number, description, problems, cases):
    """One TAP line, and the first problems (case, why) as comments."""
    print("%s %d - %s" % ("not ok" if problems else "ok", number, description))
    if problems:
        print("# %d disagreements (FUZZ_SEED=%d FUZZ_CASES=%d); the first ones:" % (len(problems), SEED, CASES))
        for i, why in problems[:8]:
            print("#   case %d (%s): %s" % (i, cases[i][0], why))
            print("#     %s" % show(cases[i][1]))


def compare(cases, parsed, results, validator):
    """The problems of each kind: (parse, is_valid, validate), each a list of
    (case, why); and counters for the summary."""
    parse_problems, valid_problems, validate_problems = [], [], []
    stats = collections.Counter()
    for i, (category, _, _) in enumerate(cases):
        p, r = parsed[i], results[i]
        server_parsed = r.stage != "parse"
        if p.refusal:
            if server_parsed:
                parse_problems.append((i, "the server parsed it; the oracle expects %s"
                                       % "/".join(sorted(p.refusal))))
            elif r.sqlstate not in p.refusal:
                parse_problems.append((i, "refused with %s %s; the oracle expects %s"
                                       % (r.sqlstate, r.message, "/".join(sorted(p.refusal)))))
            else:
                stats["refused"] += 1
                stats["refused:" + r.sqlstate] += 1
            continue
        if not server_parsed:
            if r.sqlstate == "54001" and p.depth > MUST_PARSE_DEPTH:
                stats["too deep"] += 1
            else:
                parse_problems.append((i, "refused with %s %s (depth %d); the oracle parses it"
                                       % (r.sqlstate, r.message, p.depth)))
            continue
        if r.stage == "is_valid":
            valid_problems.append((i, "is_valid raised %s %s" % (r.sqlstate, r.message)))
            continue
        broken = broken_fields(validator, p.doc, r.size, r.max_bytes)
        stats["invalid" if broken else "valid"] += 1
        if r.size > r.max_bytes:
            stats["too big"] += 1
        if r.valid != (not broken):
            valid_problems.append((i, "is_valid says %s, oracle says %s (size %d, limit %d)"
                                   % (r.valid, "invalid: " + fields_text(broken)
                                      if broken else "valid", r.size, r.max_bytes)))
        if r.valid:
            if r.stage != "done":
                validate_problems.append((i, "is_valid is true but validate raised %s: %s"
                                          % (r.sqlstate, json.dumps(r.detail))))
        elif r.stage == "done" or r.sqlstate != "22023" or r.message != "invalid event envelope":
            validate_problems.append((i, "is_valid is false but validate %s"
                                      % ("raised nothing" if r.stage == "done"
                                         else "raised %s %s" % (r.sqlstate, r.message))))
        else:
            field = server_field(r.detail)
            if field is None:
                validate_problems.append((i, "unexpected detail %s" % json.dumps(r.detail)))
            elif broken and not field_matches(field, broken):
                validate_problems.append((i, "detail %s names no field the oracle finds broken (%s)"
                                          % (json.dumps(r.detail), fields_text(broken))))
    return parse_problems, valid_problems, validate_problems, stats


def main():
    started = time.monotonic()
    enc = subprocess.run(["psql", "-X", "-At", "-c", "SHOW server_encoding"],
                         capture_output=True, text=True)
    print("1..4")
    if enc.returncode != 0 or enc.stdout.strip() != "UTF8":
        why = enc.stderr.strip() or "server_encoding is %s, not UTF8" % enc.stdout.strip()
        for n in range(1, 5):
            print("not ok %d - cannot check: %s" % (n, why))
        return 1

    validator = load_schema_validator()
    cases = generate_cases(CASES)
    parsed = [parse_like_jsonb(raw) for _, raw, _ in cases]
    generated = time.monotonic()
    results, status, stderr = run_session(cases)
    checked = time.monotonic()

    print("# seed %d (FUZZ_SEED), %d cases (FUZZ_CASES), %.1f MB" %
          (SEED, CASES, sum(len(raw) for _, raw, _ in cases) / 1e6))
    print("# categories: " + ", ".join("%s %d" % kv for kv in
                                        sorted(collections.Counter(c for c, _, _ in cases).items())))
    if status != 0 or len(results) != CASES:
        print("# psql exited with %d and returned %d of %d results" % (status, len(results), CASES))
        for line in stderr.strip().split("\n")[-20:]:
            print("#   " + line)
        for n, what in enumerate(["parse", "is_valid", "validate"], 1):
            print("not ok %d - %s: no results" % (n, what))
    else:
        parse_p, valid_p, validate_p, stats = compare(cases, parsed, results, validator)
        codes = ", ".join("%s %d" % (k[8:], v) for k, v in sorted(stats.items())
                          if k.startswith("refused:"))
        print("# %d valid, %d invalid (%d too big); refused by jsonb input: %d as the oracle "
              "expects (%s), %d parsable but too deep for the server (54001)"
              % (stats["valid"], stats["invalid"], stats["too big"], stats["refused"], codes,
                 stats["too deep"]))
        report(1, "%d cases: the server parses as jsonb exactly what the oracle parses" % CASES,
               parse_p, cases)
        report(2, "is_valid agrees with the oracle (JSON Schema, RFC 3339, size)", valid_p, cases)
        report(3, "validate raises 22023, naming a broken field, exactly when is_valid is false",
               validate_p, cases)
    up, why = server_is_up()
    print("%s 4 - the server is still up" % ("ok" if up else "not ok"))
    if not up:
        print("# " + why)
    print("# %.1f s generating and parsing, %.1f s in the server, %.1f s in all"
          % (generated - started, checked - generated, time.monotonic() - started))
    return 0


def run_with_deep_stack(func):
    """Runs func in a thread with a big stack: Python's json parser and repr
    recurse once per nesting level, and some documents nest 200,000 deep."""
    sys.setrecursionlimit(2000000)
    threading.stack_size(1024 * 1024 * 1024)
    outcome = []

    def run():
        try:
            outcome.append(func())
        except BaseException:
            for line in traceback.format_exc().split("\n"):
                print("# " + line)
            print("Bail out! the fuzzer failed")
            outcome.append(1)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome[0]


if __name__ == "__main__":
    sys.exit(run_with_deep_stack(main))

#!/usr/bin/python3
"""test/fuzz_envelope.py: random mutation testing of the envelope validator.

Generates FUZZ_CASES (default 10000) documents from a fixed seed (FUZZ_SEED,
default 20240613): valid envelopes of EVENTS.md, most of them mutated at
random.  An oracle written here from EVENTS.md's rules (not from the C code)
says which are valid.  All cases are loaded with psql's \\copy into a temporary
table and checked in ONE psql session: eventstore.is_valid(doc) for every
case, and eventstore.validate(doc) for every case, which must raise SQLSTATE
22023 exactly for the refused ones (any other error stops the session and
fails the run).  Prints TAP:

    1..3
    ok 1 - 10000 cases: server and oracle agree
    ok 2 - validate raises 22023, naming a broken field, exactly for refused cases
    ok 3 - the server is still up

Runs against the database of the libpq environment (PGHOST, PGPORT,
PGDATABASE, ...), in which it re-creates the extension eventstore.  stdlib
only.
"""

import datetime
import json
import os
import random
import re
import subprocess
import sys
import tempfile

SEED = int(os.environ.get("FUZZ_SEED", "20240613"))
CASES = int(os.environ.get("FUZZ_CASES", "10000"))
MAX_INT32 = 2147483647
ENVELOPE_MEMBERS = ("id", "type", "version", "data", "metadata")

# ---------------------------------------------------------------------------
# The oracle, from EVENTS.md's rules
# ---------------------------------------------------------------------------

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
VERSION_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
# RFC 3339 section 5.6 date-time; "T" and "Z" may be lower case.
TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]"
    r"([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-]([0-9]{2}):([0-9]{2}))")


def rfc3339_ok(s):
    m = TIME_RE.fullmatch(s)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    # datetime has no year 0; year 0 is a leap year like 2000 (proleptic
    # Gregorian, divisible by 400), so it has the same calendar.
    try:
        datetime.date(year if year > 0 else 2000, month, day)
    except ValueError:
        return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    if m.group(9) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return False
    return True


def oracle(doc):
    """The set of fields whose rule the document breaks (empty: valid).

    Fields are named as the server names them: "id", "metadata.time", an
    unknown member's name, or "" for the event as a whole."""
    if not isinstance(doc, dict):
        return {""}
    broken = set()
    for name in doc:
        if name not in ENVELOPE_MEMBERS:
            broken.add(name)
    v = doc.get("id")
    if not (isinstance(v, str) and UUID_RE.fullmatch(v)):
        broken.add("id")
    v = doc.get("type")
    if not (isinstance(v, str) and v != ""):
        broken.add("type")
    v = doc.get("version")
    m = VERSION_RE.fullmatch(v) if isinstance(v, str) else None
    if not (m and int(m.group(1)) <= MAX_INT32 and int(m.group(2)) <= MAX_INT32):
        broken.add("version")
    if not isinstance(doc.get("data"), dict):
        broken.add("data")
    md = doc.get("metadata")
    if not isinstance(md, dict):
        broken.add("metadata")
    else:
        v = md.get("source")
        if not (isinstance(v, str) and v != ""):
            broken.add("metadata.source")
        v = md.get("time")
        if not (isinstance(v, str) and rfc3339_ok(v)):
            broken.add("metadata.time")
    return broken


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------

class RawNumber:
    """A JSON number written exactly as given (boundary values, exponents)."""

    def __init__(self, text):
        self.text = text


rnd = random.Random(SEED)
UNICODE_ESCAPES_OK = True       # set from the server encoding in main()

HEX = "0123456789abcdefABCDEF"
ODD_CHARS = (
    " \t\n\r\x01\x1f\x7f\"\\/'{}[]:,.+-_0123456789TtZz"
    "\u00a0\u00e9\u00fc\u00df\u0130\u0131\u03a9\u0661\u0663\u06f1\u0966"
    "\u2028\u2029\u200b\u200d\ufeff\uff10\uff11\u3000\u9ce5\ufffd"
    "\U0001F426\U0001D7D8\U00010000\U0010FFFD")
NAMES = ["id", "type", "version", "data", "metadata", "ID", "Id", "TYPE", "Version",
         "id ", " id", "metadata2", "meta", "source", "time", "name", "specversion",
         "\u00efd", "\uff49\uff44", "i\u200bd", "", " ", "x" * 70,
         "\u00e9" * 40, "\U0001F426", "\"", "\\", "topic", "stream"]


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
    if r < 0.15:
        return rnd.choice("ab\u00e9\U0001F426") * rnd.randint(100, 3000)
    return "".join(rand_char() for _ in range(rnd.randint(1, maxlen)))


def rand_uuid():
    h = "%032x" % rnd.getrandbits(128)
    u = "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
    r = rnd.random()
    if r < 0.1:
        return u.upper()
    if r < 0.2:
        return "".join(c.upper() if rnd.random() < 0.5 else c for c in u)
    if r < 0.22:
        return "00000000-0000-0000-0000-000000000000"
    return u


def rand_version_number():
    r = rnd.random()
    if r < 0.5:
        return rnd.randint(0, 20)
    if r < 0.7:
        return rnd.choice([MAX_INT32, MAX_INT32 - 1, 1000000000, 999999999, 10, 100])
    return rnd.randint(0, MAX_INT32)


def rand_offset():
    r = rnd.random()
    if r < 0.4:
        return rnd.choice("Zz")
    return "%s%02d:%02d" % (rnd.choice("+-"), rnd.randint(0, 23), rnd.randint(0, 59))


def rand_valid_time():
    year = rnd.choice([rnd.randint(0, 9999), rnd.randint(1970, 2100), 2000, 2024, 1900, 0, 9999])
    month = rnd.randint(1, 12)
    if rnd.random() < 0.2:
        month = 2
    last = (datetime.date(year if year > 0 else 2000, month % 12 + 1, 1) - datetime.timedelta(days=1)).day \
        if month < 12 else 31
    day = rnd.choice([rnd.randint(1, last), last, 1])
    second = rnd.choice([rnd.randint(0, 59), 59, 60, 0])
    frac = ""
    if rnd.random() < 0.4:
        frac = "." + "".join(rnd.choice("0123456789") for _ in range(rnd.choice([1, 2, 3, 6, 9, 30])))
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
    "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z",
    "0000-02-29T00:00:00Z", "1985-04-12T23:20:50-00:00", "1985-04-12t23:20:50z",
    "\uff11985-04-12T23:20:50Z", "1985-04-12T23:20:5\u0661Z", "1985-04-12T23:20:50\u2212" + "01:00",
]

TRICKY_VERSIONS = [
    "1", "1.", ".1", "01.0", "1.01", "00.0", "0.00", "+1.0", "-1.0", " 1.0", "1.0 ", "1.0.0",
    "1.x", "2147483648.0", "0.2147483648", "2147483647.2147483647", "4294967296.0",
    "9999999999.0", "99999999999999999999.1", "0.0", "1.0", "10.10", "1,0", "", ".", "1e0.0",
    "\u0661.\u0660", "\uff11.\uff10", "1.0\n", "0x1.0", "1.0\u200b",
]

JSON_BOUNDARY_NUMBERS = ["0", "-0", "1", "-1", "2147483647", "2147483648", "-2147483649",
                         "9223372036854775808", "1e308", "1e-400", "1E+2", "0.1", "-0.0",
                         "123456789012345678901234567890.5", "1e1000"]


def rand_scalar():
    r = rnd.random()
    if r < 0.2:
        return None
    if r < 0.35:
        return rnd.choice([True, False])
    if r < 0.55:
        return RawNumber(rnd.choice(JSON_BOUNDARY_NUMBERS))
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


def deep_nesting():
    depth = rnd.randint(10, 150)
    v = rand_scalar()
    for _ in range(depth):
        v = {rand_string(3) or "k": v} if rnd.random() < 0.6 else [v]
    return v


def rand_data():
    r = rnd.random()
    if r < 0.3:
        return {}
    if r < 0.45:
        return {"big": deep_nesting()}
    return {"user": {"id": rand_uuid()}, "image": {"url": "https://example.org/%d.jpg" % rnd.randint(0, 999)},
            "rating": rnd.randint(1, 5), rand_string(5): rand_value(1)}


def valid_envelope():
    md = {"source": rnd.choice(["services/TickAPI", "services/ScoreModel", "services/Notifier",
                                "services/AuthAPI", "services/AdminAPI", "x", " ",
                                "services/Vogel-\u00fc-\u9ce5", "\U0001F426"]),
          "time": rand_valid_time()}
    for _ in range(rnd.choice([0, 0, 0, 1, 2])):
        md[rand_string(8) or "k"] = rand_value(1)
    return {
        "id": rand_uuid(),
        "type": rnd.choice(["new", "update", "delete", "email", "login", "x", " ", "\u00e9",
                            "\U0001F426", "a\"b\\c", "new\n"]),
        "version": "%d.%d" % (rand_version_number(), rand_version_number()),
        "data": rand_data(),
        "metadata": md,
    }


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
        doc["version"] = rnd.choice(TRICKY_VERSIONS) if rnd.random() < 0.7 else \
            "%d.%d" % (rnd.choice([MAX_INT32 + 1, 10**10, 10**19, 0, 7]), rnd.randint(0, MAX_INT32 + 5))
    elif op == 9:
        doc["type"] = rnd.choice(["", rand_string(), mutate_string(doc["type"] if isinstance(doc.get("type"), str) else "new")])
    elif op == 10:
        doc["data"] = rnd.choice([rand_non_object(), deep_nesting(), {"s": rand_string(40)}])
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


def json_string(s, p_escape):
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif c < 0x20:
            short = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch)
            out.append(short if short and rnd.random() < 0.7 else "\\u%04x" % c)
        elif p_escape and rnd.random() < p_escape and (c < 0x80 or UNICODE_ESCAPES_OK):
            if ch == "/" and rnd.random() < 0.5:
                out.append("\\/")
            elif c < 0x10000:
                out.append(("\\u%04x" if rnd.random() < 0.5 else "\\u%04X") % c)
            else:
                c -= 0x10000
                out.append("\\u%04x\\u%04x" % (0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF)))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def ws():
    r = rnd.random()
    if r < 0.85:
        return ""
    return rnd.choice([" ", "  ", "\n", "\t", "\r\n", " \t "])


def dump(v, p_escape):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, RawNumber):
        return v.text
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json_string(v, p_escape)
    if isinstance(v, list):
        return "[" + ws() + ("," + ws()).join(dump(x, p_escape) for x in v) + ws() + "]"
    items = [ws() + json_string(k, p_escape) + ws() + ":" + ws() + dump(x, p_escape) + ws()
             for k, x in v.items()]
    return "{" + ",".join(items) + "}" if items else "{" + ws() + "}"


def make_case():
    doc = valid_envelope()
    n = rnd.choice([0, 0, 0, 1, 1, 1, 1, 2, 2, 3])
    for _ in range(n):
        doc = mutate(doc)
        if not isinstance(doc, dict):
            break
    p_escape = rnd.choice([0, 0, 0, 0.05, 0.3, 1])
    text = dump(doc, p_escape)
    if isinstance(doc, dict) and doc and rnd.random() < 0.03:
        # A duplicate member before the real one: JSON parsers (and jsonb)
        # keep the last, so this one must not matter.
        key = rnd.choice(list(doc))
        text = "{" + json_string(key, 0) + ":" + dump(rand_value(), 0) + "," + text[1:] \
            if text != "{}" else text
    return text


def copy_escape(line):
    """A field of COPY's text format."""
    return (line.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------

SESSION_SQL = r"""
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
CREATE TEMP TABLE fuzz_cases (n integer PRIMARY KEY, doc text NOT NULL);
\copy fuzz_cases FROM '%(file)s'
CREATE TEMP TABLE fuzz_results (n integer, valid boolean, raised text, detail text);
DO $fuzz$
DECLARE
    r record;
    doc jsonb;
    valid boolean;
    raised text;
    det text;
BEGIN
    FOR r IN SELECT n, c.doc FROM fuzz_cases c ORDER BY n LOOP
        doc := r.doc::jsonb;
        valid := eventstore.is_valid(doc);
        raised := 'nothing';
        det := NULL;
        BEGIN
            PERFORM eventstore.validate(doc);
        EXCEPTION WHEN invalid_parameter_value THEN
            GET STACKED DIAGNOSTICS raised = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL;
            raised := raised || ' ' || SQLERRM;
        END;
        INSERT INTO fuzz_results VALUES (r.n, valid, raised, det);
    END LOOP;
END
$fuzz$;
SELECT json_build_array(n, valid, raised, detail)::text FROM fuzz_results ORDER BY n;
"""

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


def main():
    global UNICODE_ESCAPES_OK
    enc = subprocess.run(["psql", "-X", "-At", "-c", "SHOW server_encoding"],
                         capture_output=True, text=True)
    if enc.returncode != 0:
        print("1..3")
        print("not ok 1 - cannot connect: %s" % enc.stderr.strip())
        print("not ok 2 - cannot connect")
        print("not ok 3 - cannot connect")
        return 1
    # jsonb turns \u escapes of non-ASCII characters into the server encoding.
    UNICODE_ESCAPES_OK = enc.stdout.strip() == "UTF8"

    texts = [make_case() for _ in range(CASES)]
    docs = [json.loads(t) for t in texts]
    expected = [oracle(d) for d in docs]

    with tempfile.TemporaryDirectory(prefix="fuzz_envelope.") as tmp:
        path = os.path.join(tmp, "cases.tsv")
        with open(path, "w", encoding="utf-8") as f:
            for i, t in enumerate(texts):
                f.write("%d\t%s\n" % (i, copy_escape(t)))
        os.chmod(tmp, 0o755)
        os.chmod(path, 0o644)
        proc = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                              input=SESSION_SQL % {"file": path.replace("'", "''")},
                              capture_output=True, text=True, encoding="utf-8")

    print("1..3")
    print("# seed %d (FUZZ_SEED), %d cases (FUZZ_CASES), %d valid by the oracle"
          % (SEED, CASES, sum(1 for e in expected if not e)))
    results = {}
    if proc.returncode == 0:
        for line in proc.stdout.split("\n"):
            if line.startswith("["):
                n, valid, raised, detail = json.loads(line)
                results[n] = (valid, raised, detail)
    if proc.returncode != 0 or len(results) != CASES:
        print("not ok 1 - %d cases: server and oracle agree" % CASES)
        print("# psql exited with %d and returned %d of %d results" % (proc.returncode, len(results), CASES))
        for line in proc.stderr.strip().split("\n")[-20:]:
            print("#   " + line)
        print("not ok 2 - validate raises 22023, naming a broken field, exactly for refused cases")
    else:
        disagree = [i for i in range(CASES) if results[i][0] != (not expected[i])]
        print("%s 1 - %d cases: server and oracle agree" % ("ok" if not disagree else "not ok", CASES))
        if disagree:
            print("# %d disagreements; the first ones:" % len(disagree))
            for i in disagree[:8]:
                valid, raised, detail = results[i]
                print("#   case %d: server says %s (%s), oracle says %s"
                      % (i, "valid" if valid else "invalid", json.dumps(detail),
                         "valid" if not expected[i] else "invalid: " + ", ".join(sorted(expected[i]))))
                print("#     %s" % json.dumps(texts[i][:300]))

        wrong = []
        for i in range(CASES):
            valid, raised, detail = results[i]
            if valid:
                if raised != "nothing":
                    wrong.append((i, "is_valid is true but validate raised %s: %s" % (raised, json.dumps(detail))))
            elif raised != "22023 invalid event envelope":
                wrong.append((i, "is_valid is false but validate raised %s" % raised))
            else:
                field = server_field(detail)
                if field is None:
                    wrong.append((i, "unexpected detail %s" % json.dumps(detail)))
                elif expected[i] and not field_matches(field, expected[i]):
                    wrong.append((i, "detail %s names no field the oracle finds broken (%s)"
                                  % (json.dumps(detail), ", ".join(sorted(expected[i])))))
        print("%s 2 - validate raises 22023, naming a broken field, exactly for refused cases"
              % ("ok" if not wrong else "not ok"))
        if wrong:
            print("# %d cases; the first ones:" % len(wrong))
            for i, why in wrong[:8]:
                print("#   case %d: %s" % (i, why))
                print("#     %s" % json.dumps(texts[i][:300]))

    up = subprocess.run(["psql", "-X", "-At", "-c", "SELECT 1"], capture_output=True, text=True)
    print("%s 3 - the server is still up" % ("ok" if up.stdout.strip() == "1" else "not ok"))
    if up.stdout.strip() != "1":
        print("# " + up.stderr.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())

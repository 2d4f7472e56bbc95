"""test/schemas.py: the JSON Schemas of docs/schemas/ as validators.

Shared by test/fuzz_envelope.py (the envelope schema as the oracle of the
validator) and test/validate_events.py (every stored event against the
schema of its topic and major version).

  SCHEMA_DIR               docs/schemas of this repository
  rfc3339_date_time(s)     RFC 3339 section 5.6 date-time with a real calendar
                           date: what the schemas' format "date-time" means here
  schema_files()           the schema files, by file name
  validator(name)          a Draft 2020-12 validator of docs/schemas/<name>,
                           with every schema of the directory resolvable by its
                           $id (so "$ref": "envelope.schema.json" works) and
                           "date-time" checked by rfc3339_date_time

The schemas' $ids live under https://eventstore.invalid/, a name that never
resolves: nothing is fetched from the network, the directory is the store.
stdlib and jsonschema (Debian's python3-jsonschema) only.
"""

import datetime
import json
import os
import re

import jsonschema

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "docs", "schemas")

# RFC 3339 section 5.6 date-time; "T" and "Z" may be lower case.  [0-9], not
# \d: \d matches other scripts' digits.
DATE_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]"
    r"([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-]([0-9]{2}):([0-9]{2}))")


def rfc3339_date_time(s):
    """RFC 3339 date-time with a real calendar date; True for non-strings
    (the schema's "type" judges those)."""
    if not isinstance(s, str):
        return True
    m = DATE_TIME_RE.fullmatch(s)
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


def schema_files():
    """{file name: parsed schema} of every *.schema.json in SCHEMA_DIR."""
    schemas = {}
    for name in sorted(os.listdir(SCHEMA_DIR)):
        if name.endswith(".schema.json"):
            with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as f:
                schemas[name] = json.load(f)
    return schemas


def _resolver(schema, schemas):
    """A resolver that finds every schema of the directory by its $id.
    jsonschema releases from 4.18 on deprecate RefResolver in favour of the
    referencing library; Debian 12 ships 4.10, which has only this."""
    store = {s["$id"]: s for s in schemas.values() if "$id" in s}
    return jsonschema.RefResolver.from_schema(schema, store=store)


def validator(name, schemas=None):
    """A Draft 2020-12 validator of SCHEMA_DIR/<name>; raises
    jsonschema.SchemaError when the file is not a valid schema."""
    schemas = schemas if schemas is not None else schema_files()
    schema = schemas[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(rfc3339_date_time)
    return jsonschema.Draft202012Validator(schema, resolver=_resolver(schema, schemas),
                                           format_checker=checker)

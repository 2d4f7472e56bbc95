#!/usr/bin/python3
"""test/validate_events.py: events against the schemas of docs/schemas/.

    validate_events.py [--used FILE] < events.jsonl
    validate_events.py --check-schemas

Reads one JSON object per line, {"topic": ..., "position": ...,
"envelope": {...}} (position is only echoed), and validates each envelope
against docs/schemas/<topic>.v<major>.schema.json, <major> being the part of
the envelope's version before the dot.  An event whose (topic, major) has no
schema file is a failure, as is an envelope without a readable version.
Prints one line per failure:

    invalid <topic> <position> <id>: <schema file>: <where>: <message>
    missing <topic> <position> <id>: no schema file <schema file>

then "# N events, N invalid, N without a schema".  With --used FILE, writes
the schema files used, one name per line (an invalid event's file counts
as used).  Exit status: 0 when every event is valid, 1 otherwise.

--check-schemas checks that every *.schema.json of docs/schemas is a valid
JSON Schema 2020-12 document whose $id ends with its own file name, and
that every $ref among them resolves; one line per file, "ok" or the error;
exit status 1 on any error.

Used by test/shell/event_schemas.sh.  stdlib and jsonschema only.
"""

import json
import os
import sys

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True     # no test/__pycache__ left in the work tree
import schemas  # noqa: E402  (test/ is not a package)

MAX_ERRORS_PER_EVENT = 3


def where(error):
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(event)"


def refs(node):
    """Every "$ref" value in a schema document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def check_schemas():
    found = schemas.schema_files()
    bad = 0
    for name, schema in found.items():
        try:
            v = schemas.validator(name, found)
            if not str(schema.get("$id", "")).endswith("/" + name):
                raise ValueError("$id %r does not end with /%s" % (schema.get("$id"), name))
            for ref in refs(schema):
                v.resolver.resolve(ref)
            # The whole schema once, so that references inside referenced
            # documents are followed too.
            v.is_valid({})
            print("ok %s" % name)
        except (jsonschema.SchemaError, jsonschema.RefResolutionError, ValueError) as e:
            print("error %s: %s" % (name, str(e).split("\n")[0]))
            bad += 1
    return 1 if bad or not found else 0


def validate(lines, used_path):
    found = schemas.schema_files()
    validators = {}
    used = set()
    events = invalid = missing = 0
    for line in lines:
        if not line.strip():
            continue
        events += 1
        row = json.loads(line)
        topic, position, env = row.get("topic"), row.get("position"), row.get("envelope")
        event_id = env.get("id") if isinstance(env, dict) else None
        label = "%s %s %s" % (topic, position, event_id)
        version = env.get("version") if isinstance(env, dict) else None
        major = version.split(".")[0] if isinstance(version, str) and "." in version else None
        if major is None:
            print("invalid %s: the envelope has no MAJOR.MINOR version" % label)
            invalid += 1
            continue
        name = "%s.v%s.schema.json" % (topic, major)
        if name not in found:
            print("missing %s: no schema file %s" % (label, name))
            missing += 1
            continue
        used.add(name)
        if name not in validators:
            validators[name] = schemas.validator(name, found)
        errors = sorted(validators[name].iter_errors(env), key=lambda e: list(e.absolute_path))
        for e in errors[:MAX_ERRORS_PER_EVENT]:
            print("invalid %s: %s: %s: %s" % (label, name, where(e), e.message[:300]))
        if errors:
            invalid += 1
    print("# %d events, %d invalid, %d without a schema" % (events, invalid, missing))
    if used_path:
        with open(used_path, "w", encoding="utf-8") as f:
            f.writelines(n + "\n" for n in sorted(used))
    return 1 if invalid or missing else 0


def main(argv):
    if argv == ["--check-schemas"]:
        return check_schemas()
    if argv[:1] == ["--used"] and len(argv) == 2:
        return validate(sys.stdin, argv[1])
    if not argv:
        return validate(sys.stdin, None)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

/*-------------------------------------------------------------------------
 *
 * envelope.c
 *		Validation of the event envelope, and the validate/is_valid functions.
 *
 * The envelope (docs/events.md) is a JSON object with exactly the members id,
 * type, version, data and metadata; metadata must hold a string source and
 * an RFC 3339 time and may hold more (correlation_id and causation_id, when
 * present, must be UUIDs: correlation.c).  The input is already parsed jsonb, so
 * members are looked up in the binary container directly; nothing is
 * reparsed or converted to text.
 *
 * Rules are checked in a fixed order (size, shape, id, type, version, data,
 * metadata, metadata.source, metadata.time, metadata.correlation_id,
 * metadata.causation_id, unknown members) so that the
 * first rule broken, and so the error, is deterministic.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_validate);
PG_FUNCTION_INFO_V1(eventstore_is_valid);

/* Longest member name quoted back in an error detail, in bytes. */
#define MAX_QUOTED_NAME 64

static const char *const envelope_members[] = {
	"id", "type", "version", "data", "metadata"
};

#define ENVELOPE_MEMBERS lengthof(envelope_members)

static bool
fail(EnvelopeError *err, const char *field, const char *fmt,...)
pg_attribute_printf(3, 4);

static bool
fail(EnvelopeError *err, const char *field, const char *fmt,...)
{
	va_list		args;
	char		buf[256];

	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	err->field = field;
	err->rule = pstrdup(buf);
	return false;
}

/* "a string", "an object", ...: what a JSON value is, for messages. */
static const char *
json_kind(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? "an object" :
				JsonContainerIsScalar(v->val.binary.data) ? "a scalar" : "an array";
		default:
			return "an unexpected value";
	}
}

static bool
is_object(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static JsonbValue *
member(JsonbContainer *container, const char *name, JsonbValue *result)
{
	return getKeyJsonValueFromContainer(container, name, strlen(name), result);
}

/*
 * Hexadecimal digits by byte, stored as value + 1 so that every other byte
 * is 0 ("not a digit") without listing it.
 */
#define HEX(c, v) [c] = (v) + 1
static const int8 hex_digit[256] = {
	HEX('0', 0), HEX('1', 1), HEX('2', 2), HEX('3', 3), HEX('4', 4),
	HEX('5', 5), HEX('6', 6), HEX('7', 7), HEX('8', 8), HEX('9', 9),
	HEX('a', 10), HEX('b', 11), HEX('c', 12), HEX('d', 13), HEX('e', 14), HEX('f', 15),
	HEX('A', 10), HEX('B', 11), HEX('C', 12), HEX('D', 13), HEX('E', 14), HEX('F', 15),
};
#undef HEX

/* The value of a hexadecimal digit, or -1. */
static inline int
hex_value(char c)
{
	return hex_digit[(unsigned char) c] - 1;
}

/*
 * Parses the canonical 8-4-4-4-12 hexadecimal form (either case), the only
 * form RFC 4122 defines; uuid_in's braces and missing hyphens are refused.
 */
static bool
parse_uuid(const char *s, int len, pg_uuid_t *uuid)
{
	int			byte = 0;

	if (len != 36)
		return false;
	for (int i = 0; i < 36;)
	{
		int			hi,
					lo;

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
			i++;
			continue;
		}
		hi = hex_value(s[i]);
		lo = hex_value(s[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		uuid->data[byte++] = (unsigned char) ((hi << 4) | lo);
		i += 2;
	}
	return true;
}

/*
 * Parses one version number: "0" or digits without a leading zero, at most
 * INT32_MAX.  Advances *pos past it.
 */
static bool
parse_version_number(const char *s, int len, int *pos, int32 *value)
{
	int64		v = 0;
	int			start = *pos;

	while (*pos < len && s[*pos] >= '0' && s[*pos] <= '9')
	{
		v = v * 10 + (s[*pos] - '0');
		if (v > PG_INT32_MAX)
			return false;
		(*pos)++;
	}
	if (*pos == start || (s[start] == '0' && *pos - start > 1))
		return false;
	*value = (int32) v;
	return true;
}

static bool
parse_version(const char *s, int len, int32 *major, int32 *minor)
{
	int			pos = 0;

	if (!parse_version_number(s, len, &pos, major))
		return false;
	if (pos >= len || s[pos] != '.')
		return false;
	pos++;
	if (!parse_version_number(s, len, &pos, minor))
		return false;
	return pos == len;
}

static bool
check_metadata(JsonbValue *metadata, EnvelopeError *err)
{
	JsonbContainer *container = metadata->val.binary.data;
	JsonbValue	v;
	char		why[128];

	if (!member(container, "source", &v))
		return fail(err, "metadata.source", "is missing");
	if (v.type != jbvString)
		return fail(err, "metadata.source", "must be a string, not %s", json_kind(&v));
	if (v.val.string.len == 0)
		return fail(err, "metadata.source", "must not be empty");

	if (!member(container, "time", &v))
		return fail(err, "metadata.time", "is missing");
	if (v.type != jbvString)
		return fail(err, "metadata.time", "must be a string, not %s", json_kind(&v));
	if (!rfc3339_check(v.val.string.val, v.val.string.len, why, sizeof(why)))
		return fail(err, "metadata.time", "must be an RFC 3339 date-time: %s", why);

	/* the conventions of correlation.c: UUIDs when present */
	for (int i = 0; i < 2; i++)
	{
		const char *name = i == 0 ? "correlation_id" : "causation_id";
		pg_uuid_t	ignored;

		if (!member(container, name, &v))
			continue;
		if (v.type != jbvString)
			return fail(err, psprintf("metadata.%s", name), "must be a string, not %s", json_kind(&v));
		if (!parse_uuid(v.val.string.val, v.val.string.len, &ignored))
			return fail(err, psprintf("metadata.%s", name), "must be a UUID such as \"123e4567-e89b-12d3-a456-426614174000\"");
	}
	return true;
}

/*
 * The envelope has every member it must; any further member is unknown.
 * Called only when the object has more members than the envelope allows.
 */
static bool
report_unknown_member(Jsonb *event, EnvelopeError *err)
{
	JsonbIterator *it = JsonbIteratorInit(&event->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		known = false;
		int			clip;

		if (tok != WJB_KEY)
			continue;
		for (size_t i = 0; i < ENVELOPE_MEMBERS; i++)
			if ((size_t) v.val.string.len == strlen(envelope_members[i]) &&
				memcmp(v.val.string.val, envelope_members[i], v.val.string.len) == 0)
				known = true;
		if (known)
			continue;
		clip = pg_mbcliplen(v.val.string.val, v.val.string.len, MAX_QUOTED_NAME);
		return fail(err, psprintf("%.*s%s", clip, v.val.string.val,
								  clip < v.val.string.len ? "..." : ""),
					"is not an envelope member (allowed: id, type, version, data, metadata)");
	}
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg_internal("envelope has more members than it lists")));
	return false;				/* keep compiler quiet */
}

bool
envelope_check(Jsonb *event, EnvelopeParts *parts, EnvelopeError *err)
{
	JsonbContainer *root = &event->root;
	JsonbValue	v;
	int32		major,
				minor;
	Size		size = VARSIZE(event) - VARHDRSZ;

	if (size > (Size) eventstore_max_event_bytes)
		return fail(err, NULL, "is %zu bytes, more than eventstore.max_event_bytes (%d)",
					size, eventstore_max_event_bytes);

	if (!JsonContainerIsObject(root))
	{
		if (JsonContainerIsScalar(root) && JsonbExtractScalar(root, &v))
			return fail(err, NULL, "must be a JSON object, not %s", json_kind(&v));
		return fail(err, NULL, "must be a JSON object, not an array");
	}

	if (!member(root, "id", &v))
		return fail(err, "id", "is missing");
	if (v.type != jbvString)
		return fail(err, "id", "must be a string, not %s", json_kind(&v));
	if (!parse_uuid(v.val.string.val, v.val.string.len, parts ? &parts->id : &(pg_uuid_t) {0}))
		return fail(err, "id", "must be a UUID such as \"123e4567-e89b-12d3-a456-426614174000\"");

	if (!member(root, "type", &v))
		return fail(err, "type", "is missing");
	if (v.type != jbvString)
		return fail(err, "type", "must be a string, not %s", json_kind(&v));
	if (v.val.string.len == 0)
		return fail(err, "type", "must not be empty");
	if (parts)
		parts->type = cstring_to_text_with_len(v.val.string.val, v.val.string.len);

	if (!member(root, "version", &v))
		return fail(err, "version", "is missing");
	if (v.type != jbvString)
		return fail(err, "version", "must be a string, not %s", json_kind(&v));
	if (!parse_version(v.val.string.val, v.val.string.len, &major, &minor))
		return fail(err, "version",
					"must be \"MAJOR.MINOR\" of non-negative integers up to 2147483647, without signs, spaces or leading zeros");
	if (parts)
	{
		parts->version_major = major;
		parts->version_minor = minor;
	}

	if (!member(root, "data", &v))
		return fail(err, "data", "is missing");
	if (!is_object(&v))
		return fail(err, "data", "must be an object, not %s", json_kind(&v));
	if (parts)
		parts->data = JsonbValueToJsonb(&v);

	if (!member(root, "metadata", &v))
		return fail(err, "metadata", "is missing");
	if (!is_object(&v))
		return fail(err, "metadata", "must be an object, not %s", json_kind(&v));
	if (!check_metadata(&v, err))
		return false;
	if (parts)
		parts->metadata = JsonbValueToJsonb(&v);

	if (JsonContainerSize(root) != ENVELOPE_MEMBERS)
		return report_unknown_member(event, err);
	return true;
}

/* The broken rule as a sentence without its capital: "field "x" is ...". */
char *
envelope_error_text(const EnvelopeError *err)
{
	if (err->field)
		return psprintf("field \"%s\" %s.", err->field, err->rule);
	return psprintf("the event %s.", err->rule);
}

/*
 * Raises the error for a broken rule.  batch_index is the 1-based position of
 * the event in append_batch's array, or 0 for a single event.
 */
void
envelope_report(const EnvelopeError *err, int batch_index)
{
	char	   *detail = envelope_error_text(err);

	if (batch_index > 0)
		detail = psprintf("Event %d of the batch: %s", batch_index, detail);
	else
		detail[0] = pg_toupper((unsigned char) detail[0]);

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid event envelope"),
			 errdetail("%s", detail)));
}

Datum
eventstore_validate(PG_FUNCTION_ARGS)
{
	EnvelopeError err;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("invalid event envelope"),
				 errdetail("The event is NULL.")));
	if (!envelope_check(PG_GETARG_JSONB_P(0), NULL, &err))
		envelope_report(&err, 0);
	PG_RETURN_VOID();
}

Datum
eventstore_is_valid(PG_FUNCTION_ARGS)
{
	EnvelopeError err;

	PG_RETURN_BOOL(envelope_check(PG_GETARG_JSONB_P(0), NULL, &err));
}

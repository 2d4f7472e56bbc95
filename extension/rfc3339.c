/*-------------------------------------------------------------------------
 *
 * rfc3339.c
 *		Strict RFC 3339 date-time check for metadata.time.
 *
 * The grammar is RFC 3339 section 5.6, "date-time":
 *
 *	 full-date "T" full-time, where "T" may be "t";
 *	 full-date = 4DIGIT "-" 2DIGIT "-" 2DIGIT, a real calendar date;
 *	 full-time = 2DIGIT ":" 2DIGIT ":" 2DIGIT ["." 1*DIGIT] offset;
 *	 offset    = "Z" / "z" / ("+" / "-") 2DIGIT ":" 2DIGIT.
 *
 * Hours 00-23, minutes 00-59, seconds 00-60 (60 for a leap second, which the
 * grammar allows), offset hours 00-23.  PostgreSQL's timestamp input is far
 * more lenient ('now', 'epoch', missing seconds, spaces), so it is not used.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "eventstore.h"

/* Reads n digits at s[*pos] into *value; false if they are not all digits. */
static bool
read_digits(const char *s, int len, int *pos, int n, int *value)
{
	int			v = 0;

	if (*pos + n > len)
		return false;
	for (int i = 0; i < n; i++)
	{
		char		c = s[*pos + i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*pos += n;
	*value = v;
	return true;
}

static bool
expect_char(const char *s, int len, int *pos, char c)
{
	if (*pos >= len || s[*pos] != c)
		return false;
	(*pos)++;
	return true;
}

static int
days_in_month(int year, int month)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool		leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return (month == 2 && leap) ? 29 : days[month - 1];
}

/*
 * Returns true if s (len bytes, not NUL-terminated) is an RFC 3339
 * date-time; otherwise writes the reason into why.
 */
bool
rfc3339_check(const char *s, int len, char *why, size_t whylen)
{
	int			pos = 0;
	int			year,
				month,
				day,
				hour,
				minute,
				second,
				off_hour,
				off_minute;

#define FAIL(...) do { snprintf(why, whylen, __VA_ARGS__); return false; } while (0)

	if (!read_digits(s, len, &pos, 4, &year) ||
		!expect_char(s, len, &pos, '-') ||
		!read_digits(s, len, &pos, 2, &month) ||
		!expect_char(s, len, &pos, '-') ||
		!read_digits(s, len, &pos, 2, &day))
		FAIL("the date is not YYYY-MM-DD");
	if (month < 1 || month > 12)
		FAIL("month %02d does not exist", month);
	if (day < 1 || day > days_in_month(year, month))
		FAIL("day %02d does not exist in %04d-%02d", day, year, month);

	if (pos >= len || (s[pos] != 'T' && s[pos] != 't'))
		FAIL("the date must be followed by \"T\" and the time");
	pos++;

	if (!read_digits(s, len, &pos, 2, &hour) ||
		!expect_char(s, len, &pos, ':') ||
		!read_digits(s, len, &pos, 2, &minute) ||
		!expect_char(s, len, &pos, ':') ||
		!read_digits(s, len, &pos, 2, &second))
		FAIL("the time is not hh:mm:ss");
	if (hour > 23)
		FAIL("hour %02d does not exist", hour);
	if (minute > 59)
		FAIL("minute %02d does not exist", minute);
	if (second > 60)
		FAIL("second %02d does not exist", second);

	if (pos < len && s[pos] == '.')
	{
		int			start = ++pos;

		while (pos < len && s[pos] >= '0' && s[pos] <= '9')
			pos++;
		if (pos == start)
			FAIL("the fraction of a second has no digits");
	}

	if (pos < len && (s[pos] == 'Z' || s[pos] == 'z'))
		pos++;
	else if (pos < len && (s[pos] == '+' || s[pos] == '-'))
	{
		pos++;
		if (!read_digits(s, len, &pos, 2, &off_hour) ||
			!expect_char(s, len, &pos, ':') ||
			!read_digits(s, len, &pos, 2, &off_minute))
			FAIL("the offset is not +hh:mm or -hh:mm");
		if (off_hour > 23 || off_minute > 59)
			FAIL("the offset %02d:%02d does not exist", off_hour, off_minute);
	}
	else
		FAIL("the time offset (\"Z\", \"+hh:mm\" or \"-hh:mm\") is missing");

	if (pos != len)
		FAIL("unexpected characters after the time offset");
	return true;
#undef FAIL
}

/* SPDX-License-Identifier: MIT */
/*
 * output.c - what shmpoolctl prints: aligned tables, units, JSON.
 *
 * Tables: cells are collected row by row, then printed with every column
 * as wide as its widest cell (names left-aligned, numbers right-aligned),
 * two blanks between columns, optionally cut to the terminal's width (top).
 * Units: sizes in B, KiB, MiB, GiB, TiB (powers of 1024, three significant
 * digits), percentages with one decimal, durations as "3d 04:05:06".
 * JSON: built with json-c, never by hand; 64-bit counters go out as JSON
 * integers (json-c prints uint64 exactly).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

/**
 * ctl_table_init() - an empty table.
 * @t: the table.  @heads: column titles, NULL-terminated.
 * @align: one 'l' or 'r' per column.
 *
 * Does not sleep.
 */
void ctl_table_init(struct ctl_table *t, const char *const *heads, const char *align)
{
	memset(t, 0, sizeof(*t));
	t->heads = heads;
	t->align = align;
	while (heads[t->ncols])
		t->ncols++;
}

/**
 * ctl_table_row() - start a new row; its cells follow with ctl_table_cell().
 * @t: the table.
 *
 * Exits the program when out of memory (a CLI has nothing better to do).
 */
void ctl_table_row(struct ctl_table *t)
{
	if (t->nrows == t->cap) {
		unsigned cap = t->cap ? 2 * t->cap : 16;
		char **nc = realloc(t->cells, (size_t)cap * t->ncols * sizeof(*nc));

		if (!nc) {
			fprintf(stderr, "shmpoolctl: out of memory\n");
			exit(CTL_EXIT_FAIL);
		}
		t->cells = nc;
		t->cap = cap;
	}
	memset(&t->cells[(size_t)t->nrows * t->ncols], 0, t->ncols * sizeof(*t->cells));
	t->nrows++;
	t->cur = 0;
}

/**
 * ctl_table_cell() - the next cell of the current row.
 * @t: the table.  @fmt: printf format.
 *
 * Cells beyond the column count are ignored.  Exits when out of memory.
 */
void ctl_table_cell(struct ctl_table *t, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (!t->nrows || t->cur >= t->ncols)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		fprintf(stderr, "shmpoolctl: out of memory\n");
		exit(CTL_EXIT_FAIL);
	}
	va_end(ap);
	t->cells[(size_t)(t->nrows - 1) * t->ncols + t->cur++] = s;
}

static void print_line(FILE *f, const char *line, int width)
{
	if (width > 0 && (int)strlen(line) > width)
		fprintf(f, "%.*s\n", width, line);
	else
		fprintf(f, "%s\n", line);
}

/**
 * ctl_table_print() - print the titles and every row, columns aligned.
 * @t: the table.  @f: output.
 * @width: cut lines to this many columns (0: no limit).
 * @bold_col: print this column's title in bold (ANSI), -1 for none.
 *
 * Trailing blanks are never printed.  Does not sleep.
 */
void ctl_table_print(const struct ctl_table *t, FILE *f, int width, int bold_col)
{
	size_t w[32] = { 0 }, total = 0;
	char *line;

	if (t->ncols > 32)
		return;
	for (unsigned c = 0; c < t->ncols; c++) {
		w[c] = strlen(t->heads[c]);
		for (unsigned r = 0; r < t->nrows; r++) {
			const char *s = t->cells[(size_t)r * t->ncols + c];

			if (s && strlen(s) > w[c])
				w[c] = strlen(s);
		}
		total += w[c] + 2;
	}
	line = malloc(total + 1);
	if (!line)
		return;
	for (int r = -1; r < (int)t->nrows; r++) {
		size_t n = 0;

		for (unsigned c = 0; c < t->ncols; c++) {
			const char *s = r < 0 ? t->heads[c] : t->cells[(size_t)r * t->ncols + c];
			size_t len;

			if (!s)
				s = "";
			len = strlen(s);
			if (c)
				n += (size_t)sprintf(line + n, "  ");
			if (t->align[c] == 'r')
				n += (size_t)sprintf(line + n, "%*s", (int)w[c], s);
			else if (c + 1 < t->ncols)
				n += (size_t)sprintf(line + n, "%-*s", (int)w[c], s);
			else
				n += (size_t)sprintf(line + n, "%s", s);
			(void)len;
		}
		while (n && line[n - 1] == ' ')
			n--;
		line[n] = '\0';
		if (r < 0 && bold_col >= 0 && (unsigned)bold_col < t->ncols) {
			/* titles: the sorted column in bold, the line cut first */
			size_t start = 0;

			for (int c = 0; c < bold_col; c++)
				start += w[c] + 2;
			if (width > 0 && n > (size_t)width)
				line[n = (size_t)width] = '\0';
			if (start < n) {
				size_t end = start + w[bold_col] < n ? start + w[bold_col] : n;

				fprintf(f, "%.*s\033[1m%.*s\033[0m%s\n", (int)start, line,
					(int)(end - start), line + start, line + end);
				continue;
			}
		}
		print_line(f, line, width);
	}
	free(line);
}

/**
 * ctl_table_free() - release the cells.
 * @t: the table.
 */
void ctl_table_free(struct ctl_table *t)
{
	for (size_t i = 0; i < (size_t)t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

/**
 * ctl_bytes() - a size with a binary unit: "512 B", "1.50 KiB", "64.0 MiB".
 * @buf: @size: where to write.  @n: bytes.
 *
 * Return: @buf.
 */
const char *ctl_bytes(char *buf, size_t size, uint64_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)n;
	unsigned u = 0;

	if (n < 1024) {
		snprintf(buf, size, "%llu B", (unsigned long long)n);
		return buf;
	}
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (v >= 100)
		snprintf(buf, size, "%.0f %s", v, units[u]);
	else if (v >= 10)
		snprintf(buf, size, "%.1f %s", v, units[u]);
	else
		snprintf(buf, size, "%.2f %s", v, units[u]);
	return buf;
}

/**
 * ctl_pct() - @part of @whole as "12.5%" ("-" when @whole is 0).
 * @buf: @size: where to write.  @part: @whole: the ratio.
 *
 * Return: @buf.
 */
const char *ctl_pct(char *buf, size_t size, uint64_t part, uint64_t whole)
{
	if (!whole)
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%.1f%%", 100.0 * (double)part / (double)whole);
	return buf;
}

/**
 * ctl_duration() - seconds as "45s", "12m 03s", "5h 02m", "3d 04h".
 * @buf: @size: where to write.  @s: seconds.
 *
 * Return: @buf.
 */
const char *ctl_duration(char *buf, size_t size, uint64_t s)
{
	unsigned long long v = s;

	if (v < 60)
		snprintf(buf, size, "%llus", v);
	else if (v < 3600)
		snprintf(buf, size, "%llum %02llus", v / 60, v % 60);
	else if (v < 86400)
		snprintf(buf, size, "%lluh %02llum", v / 3600, v / 60 % 60);
	else
		snprintf(buf, size, "%llud %02lluh", v / 86400, v / 3600 % 24);
	return buf;
}

/**
 * ctl_time() - a Unix time as local "YYYY-MM-DD HH:MM:SS" ("-" for 0).
 * @buf: @size: where to write.  @unix_s: seconds since the epoch.
 *
 * Return: @buf.
 */
const char *ctl_time(char *buf, size_t size, uint64_t unix_s)
{
	time_t t = (time_t)unix_s;
	struct tm tm;

	if (!unix_s || !localtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, size, "-");
	return buf;
}

/**
 * ctl_json_print() - print @o on stdout (pretty, one trailing newline) and
 * drop the reference.
 * @o: the object.
 */
void ctl_json_print(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							 JSON_C_TO_STRING_SPACED |
							 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/**
 * ctl_json_u64() - a JSON integer for an unsigned 64-bit counter.
 * @v: the value.
 *
 * Return: a new json_object.
 */
json_object *ctl_json_u64(uint64_t v)
{
	return json_object_new_uint64(v);
}

/**
 * ctl_str() - a protobuf string that may be absent, as "" instead of NULL.
 * @s: the string.
 *
 * Return: @s or "".
 */
const char *ctl_str(const char *s)
{
	return s ? s : "";
}

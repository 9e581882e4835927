/* The request path's few byte-level loops, in C: what the proxy does to every message
 * head, and the random ids of every request.
 *
 * parse_head(head, request) -> tuple | None
 *     A whole head (through CRLF CRLF) validated and read in one pass, when it is in the
 *     common shape: a method llhttp knows (not CONNECT), an origin-form or plain
 *     absolute-form target, HTTP/1.0 or 1.1, field values of visible ASCII, at most one
 *     plain Content-Length or Transfer-Encoding: chunked (not both), no upgrade; for
 *     responses a status of 200 or more. This is a subset of what llhttp accepts, so on
 *     None the codec asks llhttp, and nothing llhttp refuses gets through here.
 *     A request gives (method, target, minor version, offset of the start line's CR,
 *     *fields); a response (reason, status, minor version, offset, *fields).
 *
 * scan_fields(head, start) -> tuple | None
 *     The fields of a head llhttp has validated, after the CRLF at `start`; None when a
 *     Connection field names an option other than keep-alive, close or upgrade (the regex
 *     scanner also cuts the lines such options name).
 *
 *     `fields` is (host, host_count, content_length, request_id, traceparent,
 *     amzn_trace_id, expect, connection, transfer_encoding, upgrade, ambiguous, spans),
 *     where `connection` is a bit set of the Connection options (1 keep-alive, 2 close,
 *     4 upgrade) and the rest is as in headers.FieldScan.
 *
 * find_head_end(buf, start) -> int, find_line_end(buf, start) -> int
 *     Offset of the first CRLF CRLF (CRLF) at or after `start` in `buf` (bytes or
 *     bytearray), -1 when there is none: bytes.find without its per-call argument parsing.
 *
 * random_hex(count) -> bytes
 *     `count` random lower-case hex digits, for request, trace and span ids (which must be
 *     unique, not secret): xoshiro256** seeded from the OS, reseeded in a forked child.
 *
 * The Python code they stand in for is their specification (headers.scan_head_regex,
 * llhttp through the codecs, bytes.find): tests/property/test_speedups_properties.py holds
 * this file to it. Without a C compiler the proxy runs that Python code instead.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum {
    K_NONE = -1,
    K_HOST,
    K_CONTENT_LENGTH,
    K_REQUEST_ID,
    K_TRACEPARENT,
    K_AMZN_TRACE_ID,
    K_EXPECT,
    K_CONNECTION,
    K_TRANSFER_ENCODING,
    K_UPGRADE,
    K_OTHER_HOP,
    K_LOOKALIKE,
};

enum { OPT_KEEP_ALIVE = 1, OPT_CLOSE = 2, OPT_UPGRADE = 4 };

static inline unsigned char
lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Whether p[0:n] is `lit` (lower case), ignoring ASCII case. */
static int
same(const unsigned char *p, Py_ssize_t n, const char *lit)
{
    Py_ssize_t i;
    if ((size_t)n != strlen(lit))
        return 0;
    for (i = 0; i < n; i++)
        if (lower(p[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

static int
kind_of(const unsigned char *name, Py_ssize_t n)
{
    if (n < 2)
        return K_NONE;
    switch (lower(name[0])) {
    case 'h':
        return same(name, n, "host") ? K_HOST : K_NONE;
    case 'c':
        if (same(name, n, "content-length"))
            return K_CONTENT_LENGTH;
        if (same(name, n, "connection"))
            return K_CONNECTION;
        return same(name, n, "content_length") ? K_LOOKALIKE : K_NONE;
    case 't':
        if (same(name, n, "transfer-encoding"))
            return K_TRANSFER_ENCODING;
        if (same(name, n, "traceparent"))
            return K_TRACEPARENT;
        if (same(name, n, "te") || same(name, n, "trailer"))
            return K_OTHER_HOP;
        return same(name, n, "transfer_encoding") ? K_LOOKALIKE : K_NONE;
    case 'x':
        if (same(name, n, "x-request-id"))
            return K_REQUEST_ID;
        return same(name, n, "x-amzn-trace-id") ? K_AMZN_TRACE_ID : K_NONE;
    case 'e':
        return same(name, n, "expect") ? K_EXPECT : K_NONE;
    case 'u':
        return same(name, n, "upgrade") ? K_UPGRADE : K_NONE;
    case 'k':
        return same(name, n, "keep-alive") ? K_OTHER_HOP : K_NONE;
    case 'p':
        return same(name, n, "proxy-connection") ? K_OTHER_HOP : K_NONE;
    default:
        return K_NONE;
    }
}

/* The options of one Connection value (comma-separated, optional whitespace around each),
 * or -1 when one is not keep-alive, close or upgrade. */
static int
connection_options(const unsigned char *v, Py_ssize_t n)
{
    int options = 0;
    Py_ssize_t i = 0;
    while (i <= n) {
        Py_ssize_t start = i, end;
        while (i < n && v[i] != ',')
            i++;
        end = i;
        while (start < end && (v[start] == ' ' || v[start] == '\t'))
            start++;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end > start) {
            if (same(v + start, end - start, "keep-alive"))
                options |= OPT_KEEP_ALIVE;
            else if (same(v + start, end - start, "close"))
                options |= OPT_CLOSE;
            else if (same(v + start, end - start, "upgrade"))
                options |= OPT_UPGRADE;
            else
                return -1;
        }
        i++; /* past the comma (or the end) */
    }
    return options;
}

static PyObject *
lowered(const unsigned char *v, Py_ssize_t n)
{
    Py_ssize_t i;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    char *dst = PyBytes_AS_STRING(out);
    for (i = 0; i < n; i++)
        dst[i] = (char)lower(v[i]);
    return out;
}

/* Replace *slot (a new reference or NULL) with `value` (a new reference). */
static void
put(PyObject **slot, PyObject *value)
{
    Py_XSETREF(*slot, value);
}

static int
read_buffer(PyObject *obj, const unsigned char **data, Py_ssize_t *size)
{
    if (PyBytes_Check(obj)) {
        *data = (const unsigned char *)PyBytes_AS_STRING(obj);
        *size = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyByteArray_Check(obj)) {
        *data = (const unsigned char *)PyByteArray_AS_STRING(obj);
        *size = PyByteArray_GET_SIZE(obj);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "expected bytes or bytearray, got %.80s", Py_TYPE(obj)->tp_name);
    return -1;
}

static int
two_args(const char *name, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *start)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)", name, nargs);
        return -1;
    }
    *start = PyLong_AsSsize_t(args[1]);
    if (*start == -1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* The first CRLF (n = 2) or CRLF CRLF (n = 4) at or after args[1] in args[0]. */
static PyObject *
find_in(const char *name, PyObject *const *args, Py_ssize_t nargs, size_t n)
{
    const unsigned char *data, *found;
    Py_ssize_t size, start;
    if (two_args(name, args, nargs, &start) < 0 || read_buffer(args[0], &data, &size) < 0)
        return NULL;
    if (start < 0)
        start = 0;
    if (start + (Py_ssize_t)n > size)
        return PyLong_FromLong(-1);
    /* memchr for the CR, then compare inline: glibc's memmem sets up a shift table per
     * call, and a memcmp call per CR costs more than the few bytes it compares. */
    for (const unsigned char *p = data + start, *last = data + size - n; p <= last; p = found + 1) {
        found = memchr(p, '\r', (size_t)(last - p + 1));
        if (found == NULL)
            break;
        if (found[1] == '\n' && (n == 2 || (found[2] == '\r' && found[3] == '\n')))
            return PyLong_FromSsize_t(found - data);
    }
    return PyLong_FromLong(-1);
}

static PyObject *
find_head_end(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return find_in("find_head_end", args, nargs, 4);
}

static PyObject *
find_line_end(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return find_in("find_line_end", args, nargs, 2);
}

enum {
    F_HOST,
    F_HOST_COUNT,
    F_CONTENT_LENGTH,
    F_REQUEST_ID,
    F_TRACEPARENT,
    F_AMZN_TRACE_ID,
    F_EXPECT,
    F_CONNECTION,
    F_TRANSFER_ENCODING,
    F_UPGRADE,
    F_AMBIGUOUS,
    F_SPANS,
    F_COUNT,
};

/* What a scan of the field lines found (new references, NULL for none). */
typedef struct {
    PyObject *text[F_COUNT]; /* the value slots: F_HOST ... F_UPGRADE */
    PyObject *encodings;     /* list of lower-cased Transfer-Encoding values */
    PyObject *spans;         /* list of (start, end) of lines to cut */
    Py_ssize_t host_count, length_lines;
    int options, ambiguous;
} Found;

static void
found_clear(Found *f)
{
    for (int i = 0; i < F_COUNT; i++)
        Py_CLEAR(f->text[i]);
    Py_CLEAR(f->encodings);
    Py_CLEAR(f->spans);
}

/* tchar (RFC 9110 §5.6.2) and the bytes a field value may hold here (HTAB, SP, VCHAR:
 * obs-text is left to llhttp). */
static unsigned char TCHAR[256], VALUE[256];

static void
init_tables(void)
{
    const char *extra = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        TCHAR[c] = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                   || (c && strchr(extra, c) != NULL);
        VALUE[c] = c == '\t' || (c >= 0x20 && c <= 0x7e);
    }
}

/* Eight bytes at a time past bytes in 0x21..0x7e (plus SP when `space`, minus '#' when
 * `hash`): the word tests flag any byte outside (possibly a few inside, never the other
 * way round), and the byte loop of the caller decides from there. */
static inline const unsigned char *
skip_visible(const unsigned char *p, const unsigned char *limit, int space, int hash)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    const uint64_t below = ones * (space ? 0x20 : 0x21);
    uint64_t w, outside;
    while (limit - p >= 8) {
        memcpy(&w, p, 8);
        outside = ((w - below) & ~w) | (w + ones) | w; /* < floor, >= 0x7f, >= 0x80 */
        if (hash)
            outside |= ((w ^ (ones * '#')) - ones) & ~(w ^ (ones * '#'));
        if (outside & highs)
            break;
        p += 8;
    }
    return p;
}

/* The end of a field line starting at `line` (the CR of its CRLF), checking every byte when
 * `strict`; NULL when the line breaks the grammar (or, not strict, has no CR). `*colon` is
 * set to its first ':' (NULL: none). */
static const unsigned char *
line_end_of(const unsigned char *line, const unsigned char *limit, int strict,
            const unsigned char **colon)
{
    const unsigned char *p = line;
    if (!strict) {
        const unsigned char *cr = memchr(line, '\r', (size_t)(limit - line));
        *colon = cr == NULL ? NULL : memchr(line, ':', (size_t)(cr - line));
        return cr;
    }
    while (p < limit && TCHAR[*p])
        p++;
    if (p == line || p >= limit || *p != ':')
        return NULL;
    *colon = p++;
    p = skip_visible(p, limit, 1, 0);
    while (p < limit && VALUE[*p])
        p++;
    if (p + 1 >= limit || p[0] != '\r' || p[1] != '\n')
        return NULL;
    return p;
}

static int
digits_only(const unsigned char *v, Py_ssize_t n)
{
    if (n < 1 || n > 15)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return 0;
    return 1;
}

static int
add_span(Found *f, Py_ssize_t start, Py_ssize_t end)
{
    PyObject *a, *b, *pair;
    if (f->spans == NULL && (f->spans = PyList_New(0)) == NULL)
        return -1;
    a = PyLong_FromSsize_t(start);
    b = PyLong_FromSsize_t(end);
    pair = (a != NULL && b != NULL) ? PyTuple_Pack(2, a, b) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    if (pair == NULL || PyList_Append(f->spans, pair) < 0) {
        Py_XDECREF(pair);
        return -1;
    }
    Py_DECREF(pair);
    return 0;
}

/* Read the field lines of head[0:size] after the CRLF at `start` into `f`. Returns 1 when
 * done, 0 to decline (the Python path decides), -1 on error. Not strict: the head is one
 * llhttp accepted, and only a Connection option other than keep-alive, close or upgrade
 * declines. Strict: the lines themselves are checked, and anything llhttp treats
 * specially (several Content-Length lines, Content-Length beside Transfer-Encoding, a
 * Transfer-Encoding other than one "chunked", an upgrade) also declines. */
static int
scan_lines(const unsigned char *head, Py_ssize_t size, Py_ssize_t start, int strict, Found *f)
{
    const unsigned char *line, *colon, *cr, *value, *value_end, *limit = head + size;
    Py_ssize_t at;
    int kind, options, te_lines = 0, ended = 0;
    PyObject *item;

    for (at = start; at + 3 < size && head[at] == '\r' && head[at + 1] == '\n'; at = cr - head) {
        line = head + at + 2;
        if (*line == '\r') {
            ended = at + 4 == size && line[1] == '\n';
            break;
        }
        cr = line_end_of(line, limit, strict, &colon);
        if (cr == NULL) {
            if (strict)
                return 0;
            break;
        }
        if (colon == NULL)
            continue;
        kind = kind_of(line, colon - line);
        if (kind == K_NONE)
            continue;
        value = colon + 1;
        while (value < cr && (*value == ' ' || *value == '\t'))
            value++;
        value_end = cr;
        while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
            value_end--;

        item = NULL;
        switch (kind) {
        case K_CONTENT_LENGTH:
            f->length_lines++;
            if (strict && (f->length_lines > 1 || !digits_only(value, value_end - value)
                           || memchr(colon, '\t', cr - colon) != NULL))
                return 0;
            /* fall through */
        case K_HOST:
        case K_REQUEST_ID:
        case K_TRACEPARENT:
        case K_AMZN_TRACE_ID:
        case K_UPGRADE:
            if (strict && kind == K_UPGRADE)
                return 0;
            item = PyBytes_FromStringAndSize((const char *)value, value_end - value);
            break;
        case K_EXPECT:
            item = lowered(value, value_end - value);
            break;
        case K_CONNECTION:
            options = connection_options(value, value_end - value);
            if (options < 0 || (strict && (options & OPT_UPGRADE)))
                return 0;
            f->options |= options;
            break;
        case K_TRANSFER_ENCODING:
            if (strict && (++te_lines > 1 || value_end != cr || !same(value, cr - value, "chunked")
                           || memchr(colon, '\t', cr - colon) != NULL))
                return 0; /* llhttp is strict about this value's whitespace: take only the plain one */
            if (f->encodings == NULL && (f->encodings = PyList_New(0)) == NULL)
                return -1;
            item = lowered(value, value_end - value);
            if (item == NULL || PyList_Append(f->encodings, item) < 0) {
                Py_XDECREF(item);
                return -1;
            }
            Py_CLEAR(item);
            break;
        case K_LOOKALIKE:
            f->ambiguous = 1;
            break;
        }
        if (PyErr_Occurred())
            return -1;
        switch (kind) {
        case K_HOST:
            f->host_count++;
            put(&f->text[F_HOST], item);
            break;
        case K_CONTENT_LENGTH: put(&f->text[F_CONTENT_LENGTH], item); break;
        case K_REQUEST_ID: put(&f->text[F_REQUEST_ID], item); break;
        case K_TRACEPARENT: put(&f->text[F_TRACEPARENT], item); break;
        case K_AMZN_TRACE_ID: put(&f->text[F_AMZN_TRACE_ID], item); break;
        case K_EXPECT: put(&f->text[F_EXPECT], item); break;
        default: /* a hop-by-hop line (or a look-alike): cut when forwarding */
            if (kind == K_UPGRADE)
                put(&f->text[F_UPGRADE], item);
            if (add_span(f, at + 2, (Py_ssize_t)(cr - head) + 2) < 0)
                return -1;
        }
    }
    if (strict && (!ended || (te_lines && f->length_lines)))
        return 0;
    return 1;
}

/* A tuple of `prefix` items (stolen references, which must not be NULL) then what `f`
 * found; NULL on error. */
static PyObject *
found_tuple(Found *f, PyObject **prefix, int count)
{
    PyObject *result = PyTuple_New(count + F_COUNT), *item;
    if (result == NULL)
        return NULL;
    for (int i = 0; i < count; i++)
        PyTuple_SET_ITEM(result, i, prefix[i]);
    for (int i = 0; i < F_COUNT; i++) {
        switch (i) {
        case F_HOST_COUNT: item = PyLong_FromSsize_t(f->host_count); break;
        case F_CONNECTION: item = PyLong_FromLong(f->options); break;
        case F_AMBIGUOUS: item = Py_NewRef(f->ambiguous ? Py_True : Py_False); break;
        case F_TRANSFER_ENCODING:
            item = f->encodings != NULL ? PyList_AsTuple(f->encodings) : PyTuple_New(0);
            break;
        case F_SPANS: item = f->spans != NULL ? Py_NewRef(f->spans) : PyTuple_New(0); break;
        default: item = Py_NewRef(f->text[i] != NULL ? f->text[i] : Py_None);
        }
        if (item == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, count + i, item);
    }
    return result;
}

static PyObject *
scan_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Found f = {{NULL}};
    Py_ssize_t start;
    PyObject *result = NULL;
    int done;

    if (two_args("scan_fields", args, nargs, &start) < 0)
        return NULL;
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan_fields() expects bytes");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (start < 0 || start > size)
        start = size;
    done = scan_lines((const unsigned char *)PyBytes_AS_STRING(args[0]), size, start, 0, &f);
    if (done > 0)
        result = found_tuple(&f, NULL, 0);
    found_clear(&f);
    if (result == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return result;
}

/* Methods taken here; any other (CONNECT included) goes to llhttp. */
static const char *METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", NULL};
static PyObject *METHOD_BYTES[8];

/* The request line of `head`: method (a shared bytes object), target, minor version and the
 * offset of its CR; 0 when it is not one taken here. */
static int
request_line(const unsigned char *head, Py_ssize_t size, PyObject **method,
             const unsigned char **target, Py_ssize_t *target_size, int *minor,
             Py_ssize_t *line_end)
{
    const unsigned char *limit = head + size, *p, *sp = memchr(head, ' ', size < 8 ? size : 8);
    int m;
    if (sp == NULL)
        return 0;
    for (m = 0; METHODS[m] != NULL; m++)
        if ((size_t)(sp - head) == strlen(METHODS[m]) && memcmp(head, METHODS[m], sp - head) == 0)
            break;
    if (METHODS[m] == NULL)
        return 0;
    p = *target = sp + 1;
    if (p < limit && *p == '/') {
        /* origin-form */
    } else if (limit - p > 7 && memcmp(p, "http://", 7) == 0) {
        /* absolute-form: a plain host name or address, an optional port, then a path */
        const unsigned char *host = p += 7;
        while (p < limit && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                             || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
            p++;
        if (p == host)
            return 0;
        if (p < limit && *p == ':') {
            const unsigned char *port = ++p;
            while (p < limit && *p >= '0' && *p <= '9')
                p++;
            if (p == port || p - port > 5)
                return 0;
        }
        if (p >= limit || *p != '/')
            return 0;
    } else {
        return 0;
    }
    p = skip_visible(p, limit, 0, 1);
    while (p < limit && *p > 0x20 && *p < 0x7f && *p != '#')
        p++;
    *target_size = p - *target;
    if (limit - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || (p[8] != '0' && p[8] != '1')
        || p[9] != '\r' || p[10] != '\n')
        return 0;
    *minor = p[8] - '0';
    *line_end = p + 9 - head;
    *method = Py_NewRef(METHOD_BYTES[m]);
    return 1;
}

/* The status line of `head`: minor version, status, reason and the offset of its CR; 0
 * when it is not one taken here. */
static int
status_line(const unsigned char *head, Py_ssize_t size, int *minor, int *status,
            const unsigned char **reason, Py_ssize_t *reason_size, Py_ssize_t *line_end)
{
    const unsigned char *limit = head + size, *p = head + 13;
    if (size < 15 || memcmp(head, "HTTP/1.", 7) != 0 || (head[7] != '0' && head[7] != '1')
        || head[8] != ' ' || head[12] != ' ')
        return 0;
    for (int i = 9; i < 12; i++)
        if (head[i] < '0' || head[i] > '9')
            return 0;
    p = skip_visible(p, limit, 1, 0);
    while (p < limit && VALUE[*p])
        p++;
    if (p + 1 >= limit || p[0] != '\r' || p[1] != '\n')
        return 0;
    *minor = head[7] - '0';
    *status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    if (*status < 200)
        return 0; /* informational (101 included): rare, and llhttp reads them its own way */
    *reason = head + 13;
    *reason_size = p - *reason;
    *line_end = p - head;
    return 1;
}

static PyObject *
parse_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Found f = {{NULL}};
    PyObject *prefix[4] = {NULL}, *result = NULL;
    const unsigned char *head, *text;
    Py_ssize_t size, text_size, line_end;
    int request, minor, status, done;

    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "parse_head() takes a bytes head and a bool");
        return NULL;
    }
    head = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    size = PyBytes_GET_SIZE(args[0]);
    request = PyObject_IsTrue(args[1]);
    if (request < 0)
        return NULL;
    if (request) {
        if (!request_line(head, size, &prefix[0], &text, &text_size, &minor, &line_end))
            Py_RETURN_NONE;
        prefix[1] = PyBytes_FromStringAndSize((const char *)text, text_size);
    } else {
        if (!status_line(head, size, &minor, &status, &text, &text_size, &line_end))
            Py_RETURN_NONE;
        prefix[0] = PyBytes_FromStringAndSize((const char *)text, text_size);
        prefix[1] = PyLong_FromLong(status);
    }
    prefix[2] = PyLong_FromLong(minor);
    prefix[3] = PyLong_FromSsize_t(line_end);
    if (prefix[0] == NULL || prefix[1] == NULL || prefix[2] == NULL || prefix[3] == NULL)
        goto done;
    done = scan_lines(head, size, line_end, 1, &f);
    if (done > 0 && (result = found_tuple(&f, prefix, 4)) != NULL)
        memset(prefix, 0, sizeof prefix); /* stolen by the tuple */
done:
    for (int i = 0; i < 4; i++)
        Py_XDECREF(prefix[i]);
    found_clear(&f);
    if (result == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return result;
}

/* -- random ids ---------------------------------------------------------------------- */

static uint64_t rng[4];

static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
next_random(void)
{
    uint64_t result = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return result;
}

static void
seed_random(void)
{
    if (getrandom(rng, sizeof rng, 0) != (ssize_t)sizeof rng) {
        /* no entropy source answering: still distinct per process and moment */
        rng[0] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
        rng[1] = (uint64_t)time(NULL);
        rng[2] = (uint64_t)(uintptr_t)&rng;
        rng[3] = 0x2545f4914f6cdd1dULL;
    }
    if (!(rng[0] | rng[1] | rng[2] | rng[3]))
        rng[0] = 1; /* the one state xoshiro cannot leave */
}

static PyObject *
random_hex(PyObject *module, PyObject *arg)
{
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t count = PyLong_AsSsize_t(arg), i = 0;
    PyObject *out;
    char *dst;
    if (count < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "random_hex() needs a count of 0 or more");
        return NULL;
    }
    if ((out = PyBytes_FromStringAndSize(NULL, count)) == NULL)
        return NULL;
    dst = PyBytes_AS_STRING(out);
    while (i < count) {
        uint64_t bits = next_random();
        for (int n = 0; n < 16 && i < count; n++, bits >>= 4)
            dst[i++] = digits[bits & 15];
    }
    return out;
}

/* -- a timer file descriptor ---------------------------------------------------------- */

static PyObject *
timer_fd(PyObject *module, PyObject *unused)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(fd);
}

static PyObject *
timer_fd_arm(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    struct itimerspec spec = {{0, 0}, {0, 0}};
    double delay;
    long fd;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "timer_fd_arm() takes a descriptor and a delay");
        return NULL;
    }
    fd = PyLong_AsLong(args[0]);
    delay = PyFloat_AsDouble(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (delay < 1e-6)
        delay = 1e-6; /* already due: as soon as possible (zero would disarm) */
    spec.it_value.tv_sec = (time_t)delay;
    spec.it_value.tv_nsec = (long)((delay - (double)spec.it_value.tv_sec) * 1e9);
    if (timerfd_settime((int)fd, 0, &spec, NULL) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"find_head_end", (PyCFunction)(void (*)(void))find_head_end, METH_FASTCALL,
     "Offset of the first CRLF CRLF at or after start, or -1."},
    {"find_line_end", (PyCFunction)(void (*)(void))find_line_end, METH_FASTCALL,
     "Offset of the first CRLF at or after start, or -1."},
    {"parse_head", (PyCFunction)(void (*)(void))parse_head, METH_FASTCALL,
     "A head's start line and fields, validated, as a tuple; None when llhttp must decide."},
    {"timer_fd", timer_fd, METH_NOARGS, "A non-blocking CLOCK_MONOTONIC timerfd."},
    {"timer_fd_arm", (PyCFunction)(void (*)(void))timer_fd_arm, METH_FASTCALL,
     "Arm a timerfd to expire once, `delay` seconds from now."},
    {"random_hex", random_hex, METH_O, "count random lower-case hex digits (ids: unique, not secret)."},
    {"scan_fields", (PyCFunction)(void (*)(void))scan_fields, METH_FASTCALL,
     "The fields scan_head acts on, as a tuple; None when the regex scanner must decide."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "The request path's byte-level loops in C: message heads and random ids.",
    0, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_tables();
    seed_random();
    if (pthread_atfork(NULL, NULL, seed_random) != 0)
        return PyErr_Format(PyExc_OSError, "pthread_atfork failed");
    for (int m = 0; METHODS[m] != NULL; m++)
        if ((METHOD_BYTES[m] = PyBytes_FromString(METHODS[m])) == NULL)
            return NULL;
    return PyModuleDef_Init(&module);
}

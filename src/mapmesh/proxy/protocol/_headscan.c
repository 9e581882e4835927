/* The searches every proxied message head goes through, in C.
 *
 * find_head_end(buf, start) -> int, find_line_end(buf, start) -> int
 *     Offset of the first CRLF CRLF (CRLF) at or after `start` in `buf` (bytes or
 *     bytearray), -1 when there is none: bytes.find without its per-call argument parsing.
 *
 * scan_fields(head, start) -> tuple | None
 *     What mapmesh.proxy.protocol.headers.scan_head finds in a head llhttp has validated
 *     (field lines end with CRLF, no bare CR or LF, no obs-fold, names are tokens), as
 *
 *         (host, host_count, content_length, request_id, traceparent, amzn_trace_id,
 *          expect, connection, transfer_encoding, upgrade, ambiguous, spans)
 *
 *     where `connection` is a bit set of the Connection options (1 keep-alive, 2 close,
 *     4 upgrade) and everything else is as in FieldScan. None when a Connection field names
 *     any other option: the regex scanner in headers.py handles that rare case (it also
 *     cuts the lines such options name). `start` is the offset of the CRLF that ends the
 *     start line.
 *
 * headers.py is the specification: tests/unit/test_headscan.py holds this file to it on
 * generated heads. Without a C compiler the proxy runs the Python searches instead.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

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

static PyObject *
find_in(const char *name, PyObject *const *args, Py_ssize_t nargs, const char *needle, size_t n)
{
    const unsigned char *data, *found;
    Py_ssize_t size, start;
    if (two_args(name, args, nargs, &start) < 0 || read_buffer(args[0], &data, &size) < 0)
        return NULL;
    if (start < 0)
        start = 0;
    if (start + (Py_ssize_t)n > size)
        return PyLong_FromLong(-1);
    found = memmem(data + start, (size_t)(size - start), needle, n);
    return PyLong_FromSsize_t(found == NULL ? -1 : found - data);
}

static PyObject *
find_head_end(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return find_in("find_head_end", args, nargs, "\r\n\r\n", 4);
}

static PyObject *
find_line_end(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return find_in("find_line_end", args, nargs, "\r\n", 2);
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

static PyObject *
scan_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *head, *line, *colon, *cr, *value, *value_end;
    Py_ssize_t size, start, at, host_count = 0;
    int kind, options = 0, ambiguous = 0, found;
    PyObject *text[F_COUNT] = {NULL};
    PyObject *encodings = NULL, *spans = NULL, *result = NULL, *item;

    if (two_args("scan_fields", args, nargs, &start) < 0)
        return NULL;
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan_fields() expects bytes");
        return NULL;
    }
    head = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    size = PyBytes_GET_SIZE(args[0]);
    if (start < 0 || start > size)
        start = size;

    /* `at` is the CRLF before a line; the head ends at an empty line. */
    for (at = start; at + 3 < size && head[at] == '\r' && head[at + 1] == '\n'; at = cr - head) {
        line = head + at + 2;
        cr = memchr(line, '\r', (size_t)(size - at - 2));
        if (cr == NULL || cr == line)
            break;
        colon = memchr(line, ':', (size_t)(cr - line));
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
        case K_HOST:
            host_count++;
            /* fall through */
        case K_CONTENT_LENGTH:
        case K_REQUEST_ID:
        case K_TRACEPARENT:
        case K_AMZN_TRACE_ID:
        case K_UPGRADE:
            item = PyBytes_FromStringAndSize((const char *)value, value_end - value);
            break;
        case K_EXPECT:
            item = lowered(value, value_end - value);
            break;
        case K_CONNECTION:
            found = connection_options(value, value_end - value);
            if (found < 0)
                goto done; /* an option the regex scanner deals with: result stays None */
            options |= found;
            break;
        case K_TRANSFER_ENCODING:
            if (encodings == NULL && (encodings = PyList_New(0)) == NULL)
                goto done;
            item = lowered(value, value_end - value);
            if (item == NULL || PyList_Append(encodings, item) < 0)
                goto done;
            Py_CLEAR(item);
            break;
        case K_LOOKALIKE:
            ambiguous = 1;
            break;
        }
        if (PyErr_Occurred())
            goto done;
        switch (kind) {
        case K_HOST: put(&text[F_HOST], item); break;
        case K_CONTENT_LENGTH: put(&text[F_CONTENT_LENGTH], item); break;
        case K_REQUEST_ID: put(&text[F_REQUEST_ID], item); break;
        case K_TRACEPARENT: put(&text[F_TRACEPARENT], item); break;
        case K_AMZN_TRACE_ID: put(&text[F_AMZN_TRACE_ID], item); break;
        case K_EXPECT: put(&text[F_EXPECT], item); break;
        default: /* a hop-by-hop line (or a look-alike): cut when forwarding */
            if (kind == K_UPGRADE)
                put(&text[F_UPGRADE], item);
            if (spans == NULL && (spans = PyList_New(0)) == NULL)
                goto done;
            item = Py_BuildValue("(nn)", at + 2, (Py_ssize_t)(cr - head) + 2);
            if (item == NULL || PyList_Append(spans, item) < 0) {
                Py_XDECREF(item);
                goto done;
            }
            Py_DECREF(item);
        }
    }

    if ((result = PyTuple_New(F_COUNT)) == NULL)
        goto done;
    for (int i = 0; i < F_COUNT; i++) {
        switch (i) {
        case F_HOST_COUNT: item = PyLong_FromSsize_t(host_count); break;
        case F_CONNECTION: item = PyLong_FromLong(options); break;
        case F_AMBIGUOUS: item = Py_NewRef(ambiguous ? Py_True : Py_False); break;
        case F_TRANSFER_ENCODING:
            item = encodings != NULL ? PyList_AsTuple(encodings) : PyTuple_New(0);
            break;
        case F_SPANS: item = spans != NULL ? Py_NewRef(spans) : PyTuple_New(0); break;
        default: item = Py_NewRef(text[i] != NULL ? text[i] : Py_None);
        }
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyTuple_SET_ITEM(result, i, item);
    }

done:
    for (int i = 0; i < F_COUNT; i++)
        Py_XDECREF(text[i]);
    Py_XDECREF(encodings);
    Py_XDECREF(spans);
    if (result == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return result;
}

static PyMethodDef methods[] = {
    {"find_head_end", (PyCFunction)(void (*)(void))find_head_end, METH_FASTCALL,
     "Offset of the first CRLF CRLF at or after start, or -1."},
    {"find_line_end", (PyCFunction)(void (*)(void))find_line_end, METH_FASTCALL,
     "Offset of the first CRLF at or after start, or -1."},
    {"scan_fields", (PyCFunction)(void (*)(void))scan_fields, METH_FASTCALL,
     "The fields scan_head acts on, as a tuple; None when the regex scanner must decide."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_headscan",
    "Message-head searches of the HTTP/1.1 codecs, in C (see mapmesh.proxy.protocol.headers).",
    0, methods,
};

PyMODINIT_FUNC
PyInit__headscan(void)
{
    return PyModuleDef_Init(&module);
}

/* streamlet.native._speedups: the shuffle's per-record work, in C.
 *
 * Optional: streamlet works without it (streamlet/native/__init__.py picks the pure
 * Python code when this module was not built), and both give identical
 * results; tests run both. Why C here and nowhere else: a shuffle touches
 * every record again to find its owner and every crossing record twice more
 * to encode and decode it, and in Python each of those costs a dict lookup
 * or an object walk that misses the cache (docs/performance.md, "Workers").
 *
 *   key_group(key, max_parallelism, fallback) -> int
 *       streamlet.state.keys.key_group for exact int (64-bit) and str keys;
 *       any other key is passed to ``fallback(key, max_parallelism)``.
 *   cut(values, keys, timestamps, workers, max_parallelism, fallback)
 *       -> list of (values, keys, timestamps) or None, one per worker.
 *   encode_records(values, keys, timestamps) -> bytes | None
 *       flat dicts (same str keys in the same order; int64, float, str,
 *       bool or None values) as bytes; None when any record is not one.
 *   decode_records(data, start) -> (values, keys, timestamps)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* -- CRC-32 (zlib's) and murmur3's finaliser, as streamlet.state.keys -- */

static uint32_t crc_table[256];

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t
crc_update(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

static uint32_t
fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static void
put_u32_be(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* The key group of ``key``, or -1 with an exception set. */
static long
key_group_of(PyObject *key, long maxp, PyObject *fallback)
{
    uint32_t crc;
    if (PyLong_CheckExact(key)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(key, &overflow);
        if (overflow == 0 && !(v == -1 && PyErr_Occurred())) {
            /* b"i" + len.to_bytes(4, "big") + v.to_bytes(len, "big", signed=True),
               len = (abs(v).bit_length() + 8) // 8 */
            unsigned long long mag = v < 0 ? (unsigned long long)(-(v + 1)) + 1u
                                           : (unsigned long long)v;
            int bits = mag ? 64 - __builtin_clzll(mag) : 0;
            int len = (bits + 8) >> 3; /* 1..9 */
            unsigned char buf[14];
            buf[0] = 'i';
            put_u32_be(buf + 1, (uint32_t)len);
            for (int i = 0; i < len; i++) {
                int shift = 8 * (len - 1 - i);
                buf[5 + i] = shift >= 64 ? (v < 0 ? 0xff : 0x00)
                                         : (unsigned char)((unsigned long long)(v >> shift) & 0xffu);
            }
            crc = crc_update(0, buf, (size_t)(5 + len));
            return (long)(fmix32(crc) % (uint32_t)maxp);
        }
        PyErr_Clear();
    }
    else if (PyUnicode_CheckExact(key)) {
        Py_ssize_t size;
        const char *data = PyUnicode_AsUTF8AndSize(key, &size);
        if (data != NULL && size <= 0xFFFFFFFFLL) {
            unsigned char head[5];
            head[0] = 's';
            put_u32_be(head + 1, (uint32_t)size);
            crc = crc_update(0, head, 5);
            crc = crc_update(crc, (const unsigned char *)data, (size_t)size);
            return (long)(fmix32(crc) % (uint32_t)maxp);
        }
        PyErr_Clear(); /* lone surrogates: the Python code encodes them */
    }
    PyObject *group = PyObject_CallFunction(fallback, "Ol", key, maxp);
    if (group == NULL)
        return -1;
    long g = PyLong_AsLong(group);
    Py_DECREF(group);
    if (g == -1 && PyErr_Occurred())
        return -1;
    if (g < 0 || g >= maxp) {
        PyErr_Format(PyExc_ValueError, "key group %ld out of range(%ld)", g, maxp);
        return -1;
    }
    return g;
}

static PyObject *
py_key_group(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *key, *fallback;
    long maxp;
    if (!PyArg_ParseTuple(args, "OlO:key_group", &key, &maxp, &fallback))
        return NULL;
    if (maxp <= 0 || maxp > 0x7FFFFFFFL) {
        PyErr_SetString(PyExc_ValueError, "max_parallelism must be in 1..2**31-1");
        return NULL;
    }
    long g = key_group_of(key, maxp, fallback);
    return g < 0 ? NULL : PyLong_FromLong(g);
}

/* -- cut: a keyed batch's columns, one part per owning worker -- */

static PyObject *
py_cut(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *values, *keys, *timestamps, *fallback;
    long workers, maxp;
    if (!PyArg_ParseTuple(args, "O!O!OllO:cut", &PyList_Type, &values, &PyList_Type, &keys,
                          &timestamps, &workers, &maxp, &fallback))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values);
    int has_ts = timestamps != Py_None;
    if (PyList_GET_SIZE(keys) != n
        || (has_ts && (!PyList_Check(timestamps) || PyList_GET_SIZE(timestamps) != n))) {
        PyErr_SetString(PyExc_ValueError, "cut: columns of different lengths");
        return NULL;
    }
    if (workers <= 0 || maxp <= 0 || maxp > 0x7FFFFFFFL || workers > maxp || workers > 65535) {
        PyErr_SetString(PyExc_ValueError, "cut: workers must be in 1..max_parallelism");
        return NULL;
    }
    uint16_t *owner = PyMem_Malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
    Py_ssize_t *count = PyMem_Calloc((size_t)workers, sizeof(Py_ssize_t));
    PyObject *result = NULL;
    if (owner == NULL || count == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* the list may not change under us: key_group_of only calls back for odd keys,
           and then the item is borrowed from a list the caller holds */
        long g = key_group_of(PyList_GET_ITEM(keys, i), maxp, fallback);
        if (g < 0)
            goto done;
        if (PyList_GET_SIZE(keys) != n || PyList_GET_SIZE(values) != n
            || (has_ts && PyList_GET_SIZE(timestamps) != n)) {
            PyErr_SetString(PyExc_RuntimeError, "cut: a column changed size");
            goto done;
        }
        long w = g * workers / maxp; /* streamlet.state.keys.worker_for_key_group */
        owner[i] = (uint16_t)w;
        count[w]++;
    }
    result = PyList_New(workers);
    if (result == NULL)
        goto done;
    for (long w = 0; w < workers; w++) {
        Py_ssize_t m = count[w];
        if (m == 0) {
            Py_INCREF(Py_None);
            PyList_SET_ITEM(result, w, Py_None);
            continue;
        }
        PyObject *pv = PyList_New(m), *pk = PyList_New(m), *pt = NULL;
        if (has_ts)
            pt = PyList_New(m);
        if (pv == NULL || pk == NULL || (has_ts && pt == NULL)) {
            Py_XDECREF(pv);
            Py_XDECREF(pk);
            Py_XDECREF(pt);
            Py_CLEAR(result);
            goto done;
        }
        Py_ssize_t j = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (owner[i] != w)
                continue;
            PyObject *o = PyList_GET_ITEM(values, i);
            Py_INCREF(o);
            PyList_SET_ITEM(pv, j, o);
            o = PyList_GET_ITEM(keys, i);
            Py_INCREF(o);
            PyList_SET_ITEM(pk, j, o);
            if (has_ts) {
                o = PyList_GET_ITEM(timestamps, i);
                Py_INCREF(o);
                PyList_SET_ITEM(pt, j, o);
            }
            j++;
        }
        PyObject *part = has_ts ? PyTuple_Pack(3, pv, pk, pt) : PyTuple_Pack(3, pv, pk, Py_None);
        Py_DECREF(pv);
        Py_DECREF(pk);
        Py_XDECREF(pt);
        if (part == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, w, part);
    }
done:
    PyMem_Free(owner);
    PyMem_Free(count);
    return result;
}

/* -- records: flat dicts as bytes -- */

/* Layout (native byte order: both ends are processes of one machine):
 *   u32 records, u16 fields, per field: u32 size + UTF-8 name,
 *   u8 keys column, u8 timestamps column (0xFF: None, 0xFE: inline after the
 *   records, else the index of the field whose value it is, the same object),
 *   then per record per field one tagged value, then the inline columns.
 * A tagged value: 'i' int64, 'f' double (8 bytes each), 's' u32 size + UTF-8,
 * 'n' None, 't' True, 'F' False. */

#define COL_NONE 0xFF
#define COL_INLINE 0xFE
#define MAX_FIELDS 250

typedef struct {
    char *data;
    Py_ssize_t size, cap;
} Buf;

static int
buf_reserve(Buf *b, Py_ssize_t more)
{
    if (b->size + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->size + more)
        cap *= 2;
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int
buf_put(Buf *b, const void *p, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->size, p, (size_t)n);
    b->size += n;
    return 0;
}

/* A tag and 8 bytes (an int64 or a double, native order: both ends are
   processes of one job on one machine); 1, or -1 with an exception set. */
static int
put_tagged8(Buf *b, char tag, const void *eight)
{
    if (buf_reserve(b, 9) < 0)
        return -1;
    b->data[b->size] = tag;
    memcpy(b->data + b->size + 1, eight, 8);
    b->size += 9;
    return 1;
}

/* 1 written, 0 not a value of the fast path, -1 error */
static int
put_value(Buf *b, PyObject *v)
{
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow)
            return 0;
        return put_tagged8(b, 'i', &x);
    }
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t size;
        const char *s = PyUnicode_AsUTF8AndSize(v, &size);
        if (s == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (size > 0xFFFFFFFFLL || buf_reserve(b, 5 + size) < 0)
            return size > 0xFFFFFFFFLL ? 0 : -1;
        uint32_t n32 = (uint32_t)size;
        b->data[b->size] = 's';
        memcpy(b->data + b->size + 1, &n32, 4);
        memcpy(b->data + b->size + 5, s, (size_t)size);
        b->size += 5 + size;
        return 1;
    }
    if (PyFloat_CheckExact(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        return put_tagged8(b, 'f', &d);
    }
    char tag = v == Py_None ? 'n' : v == Py_True ? 't' : v == Py_False ? 'F' : 0;
    if (!tag)
        return 0;
    return buf_put(b, &tag, 1) < 0 ? -1 : 1;
}

/* One pass over the records: each is checked (an exact dict with the first
   record's keys in the same order), its values are written, and each column
   (keys, timestamps) is matched against every field at once, so each record
   is touched once while it is in the cache. A column is a field's when that
   field holds the column's very object in every record; the lowest such
   field, as a pass per field would find. */
static PyObject *
py_encode_records(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *values, *keys, *timestamps;
    if (!PyArg_ParseTuple(args, "O!OO:encode_records", &PyList_Type, &values, &keys,
                          &timestamps))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (n == 0 || n > 0xFFFFFFFFLL)
        Py_RETURN_NONE;
    PyObject *cols_in[2] = {keys, timestamps};
    for (int c = 0; c < 2; c++) {
        PyObject *col = cols_in[c];
        if (col != Py_None && (!PyList_CheckExact(col) || PyList_GET_SIZE(col) != n))
            Py_RETURN_NONE;
    }
    PyObject *first = PyList_GET_ITEM(values, 0);
    if (!PyDict_CheckExact(first))
        Py_RETURN_NONE;
    Py_ssize_t fields = PyDict_GET_SIZE(first);
    if (fields == 0 || fields > MAX_FIELDS)
        Py_RETURN_NONE;
    PyObject *names[MAX_FIELDS];
    /* candidate[c][f]: field f has held column c's object in every record so far */
    unsigned char candidate[2][MAX_FIELDS];
    Py_ssize_t candidates[2], cols_at;
    Buf b = {NULL, 0, 0};
    PyObject *result = NULL;
    uint32_t n32 = (uint32_t)n;
    uint16_t f16 = (uint16_t)fields;
    if (buf_put(&b, &n32, 4) < 0 || buf_put(&b, &f16, 2) < 0)
        goto fail;
    {
        Py_ssize_t pos = 0, f = 0;
        PyObject *k, *v;
        while (PyDict_Next(first, &pos, &k, &v)) {
            if (!PyUnicode_CheckExact(k))
                goto not_fast;
            Py_ssize_t size;
            const char *s = PyUnicode_AsUTF8AndSize(k, &size);
            if (s == NULL) {
                PyErr_Clear();
                goto not_fast;
            }
            uint32_t s32 = (uint32_t)size;
            if (buf_put(&b, &s32, 4) < 0 || buf_put(&b, s, size) < 0)
                goto fail;
            names[f++] = k;
        }
    }
    for (int c = 0; c < 2; c++) {
        candidates[c] = cols_in[c] == Py_None ? 0 : fields;
        memset(candidate[c], cols_in[c] != Py_None, (size_t)fields);
    }
    cols_at = b.size;  /* filled in once every record was seen */
    if (buf_reserve(&b, 2) < 0)
        goto fail;
    b.size += 2;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *record = PyList_GET_ITEM(values, i);
        if (!PyDict_CheckExact(record) || PyDict_GET_SIZE(record) != fields)
            goto not_fast;
        PyObject *key = candidates[0] ? PyList_GET_ITEM(keys, i) : NULL;
        PyObject *ts = candidates[1] ? PyList_GET_ITEM(timestamps, i) : NULL;
        Py_ssize_t pos = 0, f = 0;
        PyObject *k, *v;
        while (PyDict_Next(record, &pos, &k, &v)) {
            if (k != names[f]) {
                if (!PyUnicode_CheckExact(k))
                    goto not_fast;
                int eq = PyUnicode_Compare(k, names[f]);
                if (eq == -1 && PyErr_Occurred())
                    goto fail;
                if (eq != 0)
                    goto not_fast;
            }
            if (key != NULL && candidate[0][f] && v != key) {
                candidate[0][f] = 0;
                candidates[0]--;
            }
            if (ts != NULL && candidate[1][f] && v != ts) {
                candidate[1][f] = 0;
                candidates[1]--;
            }
            int ok = put_value(&b, v);
            if (ok < 0)
                goto fail;
            if (ok == 0)
                goto not_fast;
            f++;
        }
    }
    for (int c = 0; c < 2; c++) {
        unsigned char col = COL_NONE;
        if (cols_in[c] != Py_None) {
            col = COL_INLINE;
            for (Py_ssize_t f = 0; candidates[c] && f < fields; f++) {
                if (candidate[c][f]) {
                    col = (unsigned char)f;
                    break;
                }
            }
        }
        b.data[cols_at + c] = (char)col;
        if (col != COL_INLINE)
            continue;
        for (Py_ssize_t i = 0; i < n; i++) {
            int ok = put_value(&b, PyList_GET_ITEM(cols_in[c], i));
            if (ok < 0)
                goto fail;
            if (ok == 0)
                goto not_fast;
        }
    }
    result = PyBytes_FromStringAndSize(b.data, b.size);
    PyMem_Free(b.data);
    return result;
not_fast:
    PyMem_Free(b.data);
    Py_RETURN_NONE;
fail:
    PyMem_Free(b.data);
    return NULL;
}

typedef struct {
    const unsigned char *p, *end;
} Reader;

static int
truncated(void)
{
    PyErr_SetString(PyExc_ValueError, "encoded records end early");
    return -1;
}

static int
read_bytes(Reader *r, void *out, Py_ssize_t n)
{
    if (r->end - r->p < n)
        return truncated();
    memcpy(out, r->p, (size_t)n);
    r->p += n;
    return 0;
}

static PyObject *
read_value(Reader *r)
{
    if (r->p >= r->end) {
        truncated();
        return NULL;
    }
    unsigned char tag = *r->p++;
    switch (tag) {
    case 'i': {
        long long x;
        if (read_bytes(r, &x, 8) < 0)
            return NULL;
        return PyLong_FromLongLong(x);
    }
    case 'f': {
        double d;
        if (read_bytes(r, &d, 8) < 0)
            return NULL;
        return PyFloat_FromDouble(d);
    }
    case 's': {
        uint32_t size;
        if (read_bytes(r, &size, 4) < 0)
            return NULL;
        if (r->end - r->p < (Py_ssize_t)size) {
            truncated();
            return NULL;
        }
        PyObject *s = PyUnicode_DecodeUTF8((const char *)r->p, (Py_ssize_t)size, "strict");
        r->p += size;
        return s;
    }
    case 'n':
        Py_RETURN_NONE;
    case 't':
        Py_RETURN_TRUE;
    case 'F':
        Py_RETURN_FALSE;
    }
    PyErr_Format(PyExc_ValueError, "encoded records: unknown value tag 0x%02x", tag);
    return NULL;
}

static PyObject *
py_decode_records(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "y*n:decode_records", &view, &start))
        return NULL;
    PyObject *names[MAX_FIELDS];
    Py_ssize_t fields = 0;
    PyObject *values = NULL, *columns[2] = {NULL, NULL}, *result = NULL;
    if (start < 0 || start > view.len) {
        PyErr_SetString(PyExc_ValueError, "decode_records: start out of range");
        goto done;
    }
    Reader r = {(const unsigned char *)view.buf + start, (const unsigned char *)view.buf + view.len};
    uint32_t n32;
    uint16_t f16;
    if (read_bytes(&r, &n32, 4) < 0 || read_bytes(&r, &f16, 2) < 0)
        goto done;
    if (f16 == 0 || f16 > MAX_FIELDS) {
        PyErr_Format(PyExc_ValueError, "encoded records: %u fields", (unsigned)f16);
        goto done;
    }
    for (; fields < f16; fields++) {
        uint32_t size;
        if (read_bytes(&r, &size, 4) < 0)
            goto done;
        if (r.end - r.p < (Py_ssize_t)size) {
            truncated();
            goto done;
        }
        PyObject *name = PyUnicode_DecodeUTF8((const char *)r.p, (Py_ssize_t)size, "strict");
        if (name == NULL)
            goto done;
        PyUnicode_InternInPlace(&name);
        names[fields] = name;
        r.p += size;
    }
    unsigned char cols[2];
    if (read_bytes(&r, cols, 2) < 0)
        goto done;
    Py_ssize_t n = (Py_ssize_t)n32;
    /* every record takes at least one byte per field */
    if ((r.end - r.p) / f16 < n) {
        truncated();
        goto done;
    }
    for (int c = 0; c < 2; c++) {
        if (cols[c] != COL_NONE && cols[c] != COL_INLINE && cols[c] >= f16) {
            PyErr_Format(PyExc_ValueError, "encoded records: column from field %u of %u",
                         (unsigned)cols[c], (unsigned)f16);
            goto done;
        }
        if (cols[c] != COL_NONE && (columns[c] = PyList_New(n)) == NULL)
            goto done;
    }
    values = PyList_New(n);
    if (values == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *record = PyDict_New();
        if (record == NULL)
            goto done;
        PyList_SET_ITEM(values, i, record);
        for (Py_ssize_t f = 0; f < f16; f++) {
            PyObject *v = read_value(&r);
            if (v == NULL)
                goto done;
            if (PyDict_SetItem(record, names[f], v) < 0) {
                Py_DECREF(v);
                goto done;
            }
            for (int c = 0; c < 2; c++) {
                if (cols[c] == f) {
                    Py_INCREF(v);
                    PyList_SET_ITEM(columns[c], i, v);
                }
            }
            Py_DECREF(v);
        }
    }
    for (int c = 0; c < 2; c++) {
        if (cols[c] != COL_INLINE)
            continue;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = read_value(&r);
            if (v == NULL)
                goto done;
            PyList_SET_ITEM(columns[c], i, v);
        }
    }
    if (r.p != r.end) {
        PyErr_Format(PyExc_ValueError, "encoded records: %zd bytes after the last record",
                     (Py_ssize_t)(r.end - r.p));
        goto done;
    }
    result = PyTuple_Pack(3, values, columns[0] ? columns[0] : Py_None,
                          columns[1] ? columns[1] : Py_None);
done:
    /* a list from PyList_New holds NULLs until filled: Py_XDECREF of the list
       copes with them */
    Py_XDECREF(values);
    Py_XDECREF(columns[0]);
    Py_XDECREF(columns[1]);
    for (Py_ssize_t f = 0; f < fields; f++)
        Py_DECREF(names[f]);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"key_group", py_key_group, METH_VARARGS, NULL},
    {"cut", py_cut, METH_VARARGS, NULL},
    {"encode_records", py_encode_records, METH_VARARGS, NULL},
    {"decode_records", py_decode_records, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "streamlet.native._speedups", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    crc_init();
    return PyModule_Create(&module);
}

/*
 * flagedge._speedups: the two hot spots of evaluation, in C.
 *
 *   evaluate(flags, fallback, key, context, now, flag_type=None)
 *       The untyped fast path of Snapshot.evaluate: look the key up, return the flag's
 *       prebuilt answer, or call its resolver. Everything else (a type to check, an
 *       unknown key) goes to ``fallback``, the pure-Python evaluate, so the semantics
 *       live in one place.
 *
 *   v3_choose(prefix, context, limits, outcomes, none_outcome)
 *       A whole top-level ``fractional`` on the implicit key: hash, compare with the
 *       precomputed thresholds, return the chosen outcome.
 *
 *   v3_pair(prefix, targeting_key) -> int | None
 *       murmur3_x86_32 (seed 0) of the canonical CBOR array [flagKey, targetingKey],
 *       given ``prefix`` = CBOR array header + flag key; None unless the targeting key is
 *       a non-empty str. Equal to flagedge.hashing's pure-Python result (tests pin it).
 *
 * The module is optional: flagedge runs the same code paths in Python when it is absent.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *str_answer;   /* "answer" */
static PyObject *str_resolver; /* "resolver" */
static PyObject *str_targeting_key; /* "targetingKey" */

static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static uint32_t murmur3_32(const unsigned char *data, size_t len)
{
    const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
    uint32_t h = 0; /* seed 0 */
    size_t nblocks = len / 4, i;
    for (i = 0; i < nblocks; i++) {
        uint32_t k;
        memcpy(&k, data + 4 * i, 4); /* x86-64 and aarch64 are little-endian */
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
        h = rotl32(h, 13);
        h = h * 5 + 0xe6546b64;
    }
    const unsigned char *tail = data + 4 * nblocks;
    uint32_t k1 = 0;
    switch (len & 3) {
    case 3:
        k1 ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        k1 ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        k1 ^= tail[0];
        k1 *= c1;
        k1 = rotl32(k1, 15);
        k1 *= c2;
        h ^= k1;
    }
    h ^= (uint32_t)len;
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;
    return h;
}

/* murmur3 of prefix + CBOR text header + UTF-8 of tk; -1 with an exception set on error. */
static int64_t hash_pair(PyObject *prefix, PyObject *tk)
{
    Py_ssize_t n;
    /* UTF-8 of a str is cached on the object after the first call: no copy per flag. */
    const char *utf8 = PyUnicode_AsUTF8AndSize(tk, &n);
    if (utf8 == NULL) {
        return -1; /* lone surrogates: the caller's rule turns this into GENERAL */
    }
    unsigned char header[9];
    size_t hlen;
    uint64_t un = (uint64_t)n;
    if (un < 24) {
        header[0] = (unsigned char)(0x60 | un);
        hlen = 1;
    } else if (un < 0x100) {
        header[0] = 0x78;
        header[1] = (unsigned char)un;
        hlen = 2;
    } else if (un < 0x10000) {
        header[0] = 0x79;
        header[1] = (unsigned char)(un >> 8);
        header[2] = (unsigned char)un;
        hlen = 3;
    } else if (un < 0x100000000ULL) {
        header[0] = 0x7a;
        for (int i = 0; i < 4; i++)
            header[1 + i] = (unsigned char)(un >> (8 * (3 - i)));
        hlen = 5;
    } else {
        header[0] = 0x7b;
        for (int i = 0; i < 8; i++)
            header[1 + i] = (unsigned char)(un >> (8 * (7 - i)));
        hlen = 9;
    }
    size_t plen = (size_t)PyBytes_GET_SIZE(prefix);
    size_t total = plen + hlen + (size_t)n;
    unsigned char stack[512];
    unsigned char *buf = total <= sizeof stack ? stack : PyMem_Malloc(total);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(buf, PyBytes_AS_STRING(prefix), plen);
    memcpy(buf + plen, header, hlen);
    memcpy(buf + plen + hlen, utf8, (size_t)n);
    uint32_t h = murmur3_32(buf, total);
    if (buf != stack) {
        PyMem_Free(buf);
    }
    return (int64_t)h;
}

static PyObject *v3_pair(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "v3_pair(prefix, targeting_key)");
        return NULL;
    }
    PyObject *prefix = args[0], *tk = args[1];
    if (!PyBytes_CheckExact(prefix)) {
        PyErr_SetString(PyExc_TypeError, "prefix must be bytes");
        return NULL;
    }
    if (!PyUnicode_CheckExact(tk) || PyUnicode_GET_LENGTH(tk) == 0) {
        Py_RETURN_NONE;
    }
    int64_t h = hash_pair(prefix, tk);
    if (h < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLong((unsigned long)h);
}

/* v3_choose(prefix, context, limits, outcomes, none_outcome): a whole top-level
 * ``fractional`` over the implicit key. ``limits`` packs one little-endian uint64 per
 * bucket: the first bucket whose limit exceeds the hash wins (the last limit is 2**32). */
static PyObject *v3_choose(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyBytes_CheckExact(args[0]) || !PyBytes_CheckExact(args[2]) ||
        !PyTuple_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "v3_choose(prefix: bytes, context, limits: bytes, outcomes: tuple, "
                        "none_outcome)");
        return NULL;
    }
    PyObject *ctx = args[1], *tk;
    if (PyDict_CheckExact(ctx)) {
        tk = PyDict_GetItemWithError(ctx, str_targeting_key); /* borrowed */
        if (tk == NULL && PyErr_Occurred()) {
            return NULL;
        }
        Py_XINCREF(tk);
    } else {
        tk = PyObject_GetItem(ctx, str_targeting_key);
        if (tk == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                return NULL;
            }
            PyErr_Clear();
        }
    }
    if (tk == NULL || !PyUnicode_CheckExact(tk) || PyUnicode_GET_LENGTH(tk) == 0) {
        Py_XDECREF(tk);
        Py_INCREF(args[4]);
        return args[4];
    }
    int64_t h = hash_pair(args[0], tk);
    Py_DECREF(tk);
    if (h < 0) {
        return NULL;
    }
    Py_ssize_t nout = PyTuple_GET_SIZE(args[3]);
    Py_ssize_t nlim = PyBytes_GET_SIZE(args[2]) / 8;
    const char *limits = PyBytes_AS_STRING(args[2]);
    Py_ssize_t i = 0;
    for (; i < nlim && i < nout - 1; i++) {
        uint64_t limit;
        memcpy(&limit, limits + 8 * i, 8);
        if ((uint64_t)h < limit) {
            break;
        }
    }
    if (nout == 0) {
        PyErr_SetString(PyExc_ValueError, "no outcomes");
        return NULL;
    }
    PyObject *chosen = PyTuple_GET_ITEM(args[3], i);
    Py_INCREF(chosen);
    return chosen;
}

static PyObject *evaluate(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    /* evaluate(flags, fallback, key, context, now[, flag_type]) */
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError,
                        "evaluate(flags, fallback, key, context, now, flag_type=None)");
        return NULL;
    }
    if (nkw > 0 && !(nkw == 1 && nargs == 5 &&
                     PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0),
                                                      "flag_type") == 0)) {
        /* Other keywords (now=..., context=...): the Python evaluator binds them, so both
         * paths accept the same calls. */
        return PyObject_Vectorcall(args[1], args + 2, (size_t)(nargs - 2), kwnames);
    }
    if (nargs < 5 || nargs + nkw > 6) {
        PyErr_SetString(PyExc_TypeError,
                        "evaluate(flags, fallback, key, context, now, flag_type=None)");
        return NULL;
    }
    PyObject *flags = args[0], *fallback = args[1], *key = args[2];
    PyObject *flag_type = nargs == 6 ? args[5] : (nkw == 1 ? args[nargs] : Py_None);
    if (flag_type == Py_None && PyDict_CheckExact(flags)) {
        PyObject *flag = PyDict_GetItemWithError(flags, key); /* borrowed */
        if (flag != NULL) {
            PyObject *answer = PyObject_GetAttr(flag, str_answer);
            if (answer == NULL) {
                return NULL;
            }
            if (answer != Py_None) {
                return answer;
            }
            Py_DECREF(answer);
            PyObject *resolver = PyObject_GetAttr(flag, str_resolver);
            if (resolver == NULL) {
                return NULL;
            }
            PyObject *call_args[2] = {args[3], args[4]};
            PyObject *result = PyObject_Vectorcall(resolver, call_args, 2, NULL);
            Py_DECREF(resolver);
            return result;
        }
        if (PyErr_Occurred()) {
            return NULL; /* an unhashable key */
        }
    }
    /* unknown key or a requested type: the Python path decides */
    PyObject *fb_args[4] = {key, args[3], args[4], flag_type};
    return PyObject_Vectorcall(fallback, fb_args, 4, NULL);
}

static PyMethodDef methods[] = {
    {"v3_pair", (PyCFunction)(void (*)(void))v3_pair, METH_FASTCALL,
     "murmur3_x86_32 of CBOR [flagKey, targetingKey] given the flag's prefix; None "
     "unless targeting_key is a non-empty str."},
    {"v3_choose", (PyCFunction)(void (*)(void))v3_choose, METH_FASTCALL,
     "A top-level fractional over the implicit [flagKey, targetingKey] key, in one call."},
    {"evaluate", (PyCFunction)(void (*)(void))evaluate, METH_FASTCALL | METH_KEYWORDS,
     "The untyped fast path of Snapshot.evaluate (see flagedge.engine)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "flagedge._speedups",
    "C versions of flagedge's two evaluation hot spots (optional).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    str_answer = PyUnicode_InternFromString("answer");
    str_resolver = PyUnicode_InternFromString("resolver");
    str_targeting_key = PyUnicode_InternFromString("targetingKey");
    if (str_answer == NULL || str_resolver == NULL || str_targeting_key == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}

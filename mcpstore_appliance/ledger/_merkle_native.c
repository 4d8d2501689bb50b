/* Optional accelerator for the operator's full ledger check (integrity_chunks.py): RFC 6962 hashing of whole buffers in one call.

   Through hashlib each SHA-256 call costs Python a hash object, a digest bytes object and the interpreter's
   dispatch, as much as hashing a 230-byte leaf itself: an audit makes two calls per leaf. Here the loops run in
   C over one buffer, with OpenSSL's SHA-256 (never our own), the GIL released. audit.py falls back to its
   pure-Python code, with identical results, when this module was not built. */

#define PY_SSIZE_T_CLEAN
/* SHA256_Init/Update/Final: deprecated in OpenSSL 3 but present, and cheaper per call than EVP (no provider
   lookup, no context allocation); 65-byte node inputs make the per-call cost matter. */
#define OPENSSL_API_COMPAT 0x10100000L
#include <Python.h>
#include <openssl/sha.h>
#include <string.h>

#define HASH_SIZE 32
#define MAX_LEVELS 64

static void node_hash(const unsigned char *left, const unsigned char *right, unsigned char *out)
{
    static const unsigned char prefix = 0x01;
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &prefix, 1);
    SHA256_Update(&ctx, left, HASH_SIZE);
    SHA256_Update(&ctx, right, HASH_SIZE);
    SHA256_Final(out, &ctx);
}

/* Splits buf on 0x0A into exactly count pieces, the first hashed as SHA-256(0x00 || piece) and each later one as
   it is (in a 0A 00 join it starts with the separator's 0x00): what audit.py's pure-Python path does with
   bytes.split. Returns 0, or -1 when there are more or fewer pieces (nothing is written beyond out[count]). */
static int hash_joined_leaves(const unsigned char *buf, Py_ssize_t len, Py_ssize_t count, unsigned char *out)
{
    static const unsigned char prefix = 0x00;
    const unsigned char *p = buf, *end = buf + len;
    for (Py_ssize_t i = 0; i < count; i++) {
        const unsigned char *stop = memchr(p, 0x0A, (size_t)(end - p));
        int last = i == count - 1;
        if (last ? stop != NULL : stop == NULL)
            return -1;
        if (last)
            stop = end;
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        if (i == 0)
            SHA256_Update(&ctx, &prefix, 1);
        SHA256_Update(&ctx, p, (size_t)(stop - p));
        SHA256_Final(out + i * HASH_SIZE, &ctx);
        p = stop + 1;
    }
    return 0;
}

PyDoc_STRVAR(leaf_hashes_doc,
"leaf_hashes(joined, count, /) -> bytes | None\n\n"
"The RFC 6962 leaf hashes, concatenated, of `count` leaves joined by the two bytes 0A 00 (SQLite's\n"
"group_concat(data, X'0A00')): `joined` is split on 0x0A, the first piece hashed as SHA-256(0x00 || piece),\n"
"each later piece (which starts with the separator's 0x00) as it is. None when `joined` does not split into\n"
"exactly `count` pieces (a leaf holding a newline). ValueError for a count below 1.");

static PyObject *leaf_hashes(PyObject *module, PyObject *args)
{
    Py_buffer joined;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*n:leaf_hashes", &joined, &count))
        return NULL;
    PyObject *result = NULL;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "count must be at least 1");
        goto done;
    }
    /* every piece after the first follows a 0x0A: more pieces cannot fit (nor their hashes, in memory) */
    if (count - 1 > joined.len || count > PY_SSIZE_T_MAX / HASH_SIZE) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, count * HASH_SIZE);
    if (result == NULL)
        goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = hash_joined_leaves(joined.buf, joined.len, count, (unsigned char *)PyBytes_AS_STRING(result));
    Py_END_ALLOW_THREADS
    if (status != 0)
        Py_SETREF(result, Py_NewRef(Py_None));
done:
    PyBuffer_Release(&joined);
    return result;
}

/* Appends leaf after leaf as the ledger does (storedhash.Appender): each row is the leaf hash and then the hash
   of every subtree that leaf completes, rows joined by sep. stack holds the pending complete subtrees. */
static void write_rows(const unsigned char *leaves, Py_ssize_t n, const unsigned char *sep, Py_ssize_t sep_len,
                       unsigned char *out)
{
    unsigned char stack[MAX_LEVELS][HASH_SIZE];
    int depth = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i > 0) {
            memcpy(out, sep, (size_t)sep_len);
            out += sep_len;
        }
        memcpy(stack[depth], leaves + i * HASH_SIZE, HASH_SIZE);
        memcpy(out, stack[depth], HASH_SIZE);
        out += HASH_SIZE;
        depth++;
        for (size_t j = (size_t)i + 1; (j & 1) == 0; j >>= 1) {
            depth--;
            node_hash(stack[depth - 1], stack[depth], stack[depth - 1]);
            memcpy(out, stack[depth - 1], HASH_SIZE);
            out += HASH_SIZE;
        }
    }
}

PyDoc_STRVAR(stored_rows_doc,
"stored_rows(leaf_hashes, sep, /) -> bytes\n\n"
"The stored-hash rows of leaves 0..n-1 of a tree, given their n concatenated leaf hashes: for each leaf its leaf\n"
"hash, then SHA-256(0x01 || left || right) of every subtree it completes (one per trailing 1-bit of its index\n"
"+ 1, lowest first), rows joined by `sep`. For n = 2^k and an aligned chunk of 2^k leaves, the chunk's rows as\n"
"stored, without the hashes above the chunk; its last 32 bytes are the chunk's root. ValueError unless the\n"
"length is a positive multiple of 32.");

static PyObject *stored_rows(PyObject *module, PyObject *args)
{
    Py_buffer leaves, sep;
    if (!PyArg_ParseTuple(args, "y*y*:stored_rows", &leaves, &sep))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = leaves.len / HASH_SIZE;
    if (n < 1 || leaves.len % HASH_SIZE != 0) {
        PyErr_Format(PyExc_ValueError, "leaf_hashes must be a positive multiple of %d bytes, not %zd",
                     HASH_SIZE, leaves.len);
        goto done;
    }
    /* rows 0..n-1 hold 2n - popcount(n) hashes in all */
    Py_ssize_t hashes = 2 * n;
    for (Py_ssize_t bits = n; bits; bits &= bits - 1)
        hashes--;
    if (n > PY_SSIZE_T_MAX / (2 * HASH_SIZE) || (sep.len > 0 && n - 1 > (PY_SSIZE_T_MAX - hashes * HASH_SIZE) / sep.len)) {
        PyErr_SetString(PyExc_OverflowError, "the rows would be too large");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, hashes * HASH_SIZE + (n - 1) * sep.len);
    if (result == NULL)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    write_rows(leaves.buf, n, sep.buf, sep.len, (unsigned char *)PyBytes_AS_STRING(result));
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&leaves);
    PyBuffer_Release(&sep);
    return result;
}

static PyMethodDef methods[] = {
    {"leaf_hashes", leaf_hashes, METH_VARARGS, leaf_hashes_doc},
    {"stored_rows", stored_rows, METH_VARARGS, stored_rows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_merkle_native", "RFC 6962 hashing of whole buffers (OpenSSL SHA-256) for the ledger integrity check.",
    0, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__merkle_native(void)
{
    return PyModuleDef_Init(&module);
}

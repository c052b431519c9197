# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The duplicate check's kernel (``stream_tagger.online.duplicates.fingerprints``), without the GIL."""

from libc.stdint cimport int64_t, uint8_t
from cpython.unicode cimport PyUnicode_AsUTF8String
from libc.stdlib cimport free, malloc

import numpy as np

cdef extern from *:
    const char *KERNEL_SOURCE_SHA256  # setup.py: the sha256 of this file when it was compiled

from stream_tagger.kernels import check_source

SOURCE_SHA256 = KERNEL_SOURCE_SHA256.decode("ascii")
check_source(__file__, SOURCE_SHA256)

cdef extern from "Python.h":
    # What hash(bytes) computes. It reads only the process's hash key, never an object: callable
    # without the GIL. CPython's own (underscored) API: Python 3.14 makes it public as Py_HashBuffer.
    Py_ssize_t _Py_HashBytes(const void* src, Py_ssize_t length) nogil
    int PyUnicode_READY(object text) except -1
    bint PyUnicode_IS_ASCII(object text)
    const void* PyUnicode_DATA(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    const char* PyBytes_AS_STRING(object data)
    Py_ssize_t PyBytes_GET_SIZE(object data)

cdef uint8_t SPACE = 32


cdef inline int64_t normalised_hash(
    const uint8_t* text, Py_ssize_t size, const uint8_t* table, uint8_t* out
) noexcept nogil:
    """``hash`` of the bytes of ``text`` through ``table``, runs of spaces made one and none at either
    end; -1, which that hash never gives, when nothing but spaces is left."""
    cdef Py_ssize_t i, end = 0
    cdef uint8_t mapped
    cdef bint space = False  # a word was written and a separator seen since
    for i in range(size):
        mapped = table[text[i]]
        if mapped == SPACE:
            space = end > 0
        else:
            if space:
                out[end] = SPACE
                end += 1
                space = False
            out[end] = mapped
            end += 1
    return _Py_HashBytes(out, end) if end else -1


def fingerprint_texts(texts, const uint8_t[::1] table, object unicode_ready):
    """The key of each post of ``texts`` (``fingerprints``): its UTF-8 bytes normalised through ``table``
    (256 entries) and hashed as Python hashes bytes, ``hash(bytes)`` (SipHash under the process's key);
    -1 for a post with no words. An ASCII str is read where it lies; any other goes through
    ``unicode_ready`` and is encoded first. The pass over the bytes runs without the GIL."""
    # Our own references: the pass reads the posts' memory after ``unicode_ready`` (Python code, during
    # which another thread may change a list) and without the GIL.
    cdef tuple posts = tuple(texts)
    cdef Py_ssize_t n = len(posts), i, longest = 1
    if table.shape[0] != 256:
        raise ValueError(f"a table of 256 bytes, not {table.shape[0]}")
    keys = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] k = keys
    cdef const uint8_t** data = <const uint8_t**>malloc(max(n, 1) * sizeof(uint8_t*))
    cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc(max(n, 1) * sizeof(Py_ssize_t))
    cdef uint8_t* out = NULL
    encoded = []  # what the pass reads that ``posts`` does not hold: alive until it is over
    try:
        if data == NULL or sizes == NULL:
            raise MemoryError()
        for i in range(n):
            text = posts[i]
            if not isinstance(text, str):
                raise TypeError(f"post {i} is a {type(text).__name__}, not a str")
            if type(text) is not str:  # an exact copy: no method a subclass overrides runs below
                text = str.__str__(text)
                encoded.append(text)
            PyUnicode_READY(text)
            if PyUnicode_IS_ASCII(text):  # one byte per character: its UTF-8 as it is
                data[i] = <const uint8_t*>PyUnicode_DATA(text)
                sizes[i] = PyUnicode_GET_LENGTH(text)
            else:
                utf8 = PyUnicode_AsUTF8String(unicode_ready(text))  # bytes, or TypeError
                encoded.append(utf8)
                data[i] = <const uint8_t*>PyBytes_AS_STRING(utf8)
                sizes[i] = PyBytes_GET_SIZE(utf8)
            longest = max(longest, sizes[i])
        out = <uint8_t*>malloc(longest)
        if out == NULL:
            raise MemoryError()
        with nogil:
            for i in range(n):
                k[i] = normalised_hash(data[i], sizes[i], &table[0], out)
    finally:
        free(data)
        free(sizes)
        free(out)
    return keys

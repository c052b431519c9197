# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The duplicate check's kernel (``stream_tagger.online.duplicates.fingerprints``), without the GIL."""

from libc.stdint cimport int64_t, uint8_t

import numpy as np

cdef extern from *:
    const char *KERNEL_SOURCE_SHA256  # setup.py: the sha256 of this file when it was compiled

from stream_tagger.kernels import check_source

SOURCE_SHA256 = KERNEL_SOURCE_SHA256.decode("ascii")
check_source(__file__, SOURCE_SHA256)

cdef uint8_t SPACE = 32


def normalise_bytes(const uint8_t[::1] buf, int64_t count, const uint8_t[::1] table):
    """``normalise`` of ``count`` NUL-separated posts prepared by ``fingerprints``, in one pass: the
    normalised bytes of every post back to back, and each post's [start, end) in them."""
    out = np.empty(buf.shape[0], dtype=np.uint8)
    bounds = np.empty((count, 2), dtype=np.int64)
    cdef uint8_t[::1] o = out
    cdef int64_t[:, ::1] b = bounds
    cdef int64_t i, row = 0, start = 0, end = 0
    cdef uint8_t byte, mapped
    cdef bint space = False  # a word was written and a separator seen since
    with nogil:
        for i in range(buf.shape[0]):
            byte = buf[i]
            if byte == 0:
                b[row, 0], b[row, 1] = start, end
                row += 1
                start, space = end, False
                continue
            mapped = table[byte]
            if mapped == SPACE:
                space = end > start
            else:
                if space:
                    o[end] = SPACE
                    end += 1
                    space = False
                o[end] = mapped
                end += 1
        b[row, 0], b[row, 1] = start, end
    return out[:end], bounds

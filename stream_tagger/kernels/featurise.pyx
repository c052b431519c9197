# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The featuriser's kernels: what ``stream_tagger.model.featurise`` computes, as C loops without the GIL.

``model/featurise.py`` says what the features are and prepares the batch (one buffer of UTF-8 bytes);
these functions only walk bytes and arrays. Their outputs are part of the model contract, bit for bit
(``tests/unit/test_kernel_outputs.py``): hashes are uint64 arithmetic, which wraps (mod 2^64) by
definition in C; floats keep the widths and the order of operations of that definition (float32 sums,
no fast-math, and no fused multiply-add: the build passes ``-ffp-contract=off``).
"""

from libc.math cimport log, log1p, sqrtf
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free, malloc

import numpy as np

cdef extern from *:
    const char *KERNEL_SOURCE_SHA256  # setup.py: the sha256 of this file when it was compiled

from stream_tagger.kernels import check_source

SOURCE_SHA256 = KERNEL_SOURCE_SHA256.decode("ascii")
check_source(__file__, SOURCE_SHA256)

ctypedef uint64_t u64

cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil  # index of the lowest set bit (GCC, Clang)
    void __builtin_prefetch(const void*) nogil

cdef u64 P = 0x100000001B3ULL  # FNV prime
cdef u64 GOLDEN = 0x9E3779B97F4A7C15ULL  # salt of kind k: k * golden ratio mod 2^64
cdef u64 M1 = 0xBF58476D1CE4E5B9ULL
cdef u64 M2 = 0x94D049BB133111EBULL
cdef u64 WORD_KIND = 100  # word k-grams are kind 100 + k, char k-grams kind k
cdef u64 PIECE_KIND = 200  # subword pieces: 200 at a word's start, 201 inside one
cdef uint8_t DOC_SEP = 0
cdef uint8_t SPACE = 32
cdef u64 EMPTY = 0xFFFFFFFFFFFFFFFFULL  # key of an empty slot: stops every probe
cdef int64_t AHEAD = 16  # n-grams between a slot's prefetch and its lookup
cdef u64 TOP_BIT = 1ULL << 63  # or-ed into a word before ctz: 63, not undefined, when no bit is left
cdef enum:
    SMALL_COUNTS = 256  # 1 + log(count) of smaller counts (nearly all of them) comes from a table
cdef float SUBLINEAR[SMALL_COUNTS]


cdef inline float sublinear_weight(float count) noexcept nogil:
    """1 + log(count) in double, rounded once to float32 (scikit-learn's sublinear tf, as a float32)."""
    return <float>(log(<double>count) + 1.0)


cdef void fill_sublinear() noexcept:
    cdef int64_t count
    for count in range(1, SMALL_COUNTS):
        SUBLINEAR[count] = sublinear_weight(count)


fill_sublinear()


cdef struct Table:
    # Ordered linear probing (``build_table``): a hash's home slot is its top bits, keys ascend along
    # the slots, an empty slot is EMPTY with column -1. The key is in the slot, so a lookup reads one
    # cache line, and a miss ends at the first larger key.
    const u64* keys
    const int32_t* cols
    u64 shift


cdef struct Cleaned:
    uint8_t* buf  # the batch through the cleaning table, runs of spaces collapsed
    int64_t* seps  # where each DOC_SEP is in buf
    int64_t n_seps


cdef inline u64 mix(u64 h) noexcept nogil:
    """splitmix64 finaliser: without it, short n-grams differ only in their low bits."""
    h = (h ^ (h >> 30)) * M1
    h = (h ^ (h >> 27)) * M2
    return h ^ (h >> 31)


cdef inline int32_t column(u64 h, const Table* t) noexcept nogil:
    """Column of hash ``h``, -1 when it is not in the table's vocabulary."""
    cdef u64 slot = h >> t.shift
    while t.keys[slot] < h:
        slot += 1
    return t.cols[slot] if t.keys[slot] == h else -1


cdef Table table_of(const u64[::1] keys, const int32_t[::1] cols, u64 shift) noexcept:
    cdef Table t
    t.keys = &keys[0]
    t.cols = &cols[0]
    t.shift = shift
    return t


cdef int clean(const uint8_t[::1] raw, const uint8_t[::1] table, Cleaned* out) except -1:
    """``raw`` mapped through ``table`` with runs of spaces collapsed to one, and where each separator is."""
    cdef int64_t n_raw = raw.shape[0], n = 0, n_seps = 0, i, j = 0
    cdef uint8_t c
    out.buf = <uint8_t*>malloc(n_raw + 1)
    if out.buf == NULL:
        raise MemoryError()
    with nogil:
        for i in range(n_raw):
            c = table[raw[i]]
            if c == SPACE and n and out.buf[n - 1] == SPACE:
                continue
            out.buf[n] = c
            n += 1
            if c == DOC_SEP:
                n_seps += 1
    out.seps = <int64_t*>malloc((n_seps + 1) * sizeof(int64_t))
    if out.seps == NULL:
        free(out.buf)
        raise MemoryError()
    with nogil:
        for i in range(n):
            if out.buf[i] == DOC_SEP:
                out.seps[j] = i
                j += 1
    out.n_seps = n_seps
    return 0


cdef inline int64_t bound(const Cleaned* c, int64_t kinds) noexcept nogil:
    """Most n-grams one post can have: ``kinds`` per byte (a word k-gram needs a word end)."""
    cdef int64_t d, longest = 0
    if c.n_seps <= 1:
        return 1
    for d in range(c.n_seps - 1):
        longest = max(longest, c.seps[d + 1] - c.seps[d])
    return longest * kinds + 1


cdef inline int64_t split_words(const uint8_t* buf, int64_t start, int64_t end, int64_t* words) noexcept nogil:
    """Start and end of each word of the post ``buf[start:end]`` into ``words`` (pairs); how many."""
    cdef int64_t n_words = 0, i = start
    while i < end:
        if buf[i] == SPACE:
            i += 1
            continue
        words[2 * n_words] = i
        while i < end and buf[i] != SPACE:
            i += 1
        words[2 * n_words + 1] = i
        n_words += 1
    return n_words


cdef inline u64 extend(u64 h, const uint8_t* buf, const int64_t* words, int64_t w, int64_t k) noexcept nogil:
    """Hash of word k-gram ``words[w : w + k]`` from the hash ``h`` of its first k - 1 words: the
    bytes from the end of word k - 1 (its space included) to the end of word k."""
    cdef int64_t j
    cdef int64_t i = words[2 * w] if k == 1 else words[2 * (w + k - 2) + 1]
    for j in range(i, words[2 * (w + k - 1) + 1]):
        h = h * P + buf[j]
    return h


cdef int64_t post_ngrams(
    const uint8_t* buf, int64_t start, int64_t end, int64_t char_min, int64_t char_max,
    int64_t word_ngrams, const int64_t* words, int64_t n_words, u64* out, int64_t pos,
) noexcept nogil:
    """Hashes of the n-grams of one post ``buf[start:end]`` written to ``out[pos:]``; the new pos.

    Char n-grams span word boundaries (the single spaces are part of them); word k-grams span k words
    and the spaces between."""
    cdef int64_t i, k, w
    cdef u64 h
    for i in range(start, end):
        h = 0
        for k in range(1, min(char_max, end - i) + 1):
            h = h * P + buf[i + k - 1]
            if k >= char_min:
                out[pos] = mix(h ^ (<u64>k * GOLDEN))
                pos += 1
    for w in range(n_words):
        h = 0
        for k in range(1, min(word_ngrams, n_words - w) + 1):
            h = extend(h, buf, words, w, k)
            out[pos] = mix(h ^ ((WORD_KIND + <u64>k) * GOLDEN))
            pos += 1
    return pos


cdef void count_keywords(
    const uint8_t* buf, const int64_t* words, int64_t n_words, const Table* kw, const int64_t* tags,
    const uint8_t* longer, int64_t* out,
) noexcept nogil:
    """Keyword phrases of one post, counted per tag into ``out``, leftmost-longest and not overlapping.

    The table holds every phrase (``tags`` >= 0) and every proper prefix of one (``longer``), so a
    phrase is extended only while it can still grow into a longer one."""
    cdef int64_t w = 0, k, found, tag
    cdef int32_t col
    cdef u64 h
    while w < n_words:
        h = 0
        found = 0
        tag = -1
        for k in range(1, n_words - w + 1):
            h = extend(h, buf, words, w, k)
            col = column(mix(h ^ ((WORD_KIND + <u64>k) * GOLDEN)), kw)
            if col < 0:
                break
            if tags[col] >= 0:
                found, tag = k, tags[col]
            if not longer[col]:
                break
        if found:
            out[tag] += 1
            w += found
        else:
            w += 1


cdef inline u64 piece_salt(bint initial) noexcept nogil:
    return (PIECE_KIND + (0 if initial else 1)) * GOLDEN


cdef void embed_words(
    const uint8_t* buf, const int64_t* words, int64_t n_words, const Table* pc, const float* vectors,
    int64_t dims, u64* prefix, int64_t longest, int32_t* found, float* out,
) noexcept nogil:
    """Sum of the vectors of one post's pieces into ``out``, then scaled to unit length (zero when no
    piece matched).

    Each word is cut greedily into the longest known pieces, left to right: the first may be a
    word-start piece ("▁graph"), the rest are inner pieces ("s"); a byte no piece starts with is
    skipped. That is WordPiece's own cut (greedy longest-match-first, ``pretrained_pieces``), except
    that a word WordPiece cannot cut whole becomes [UNK] there and keeps its known pieces here; training
    and serving both cut this way. A piece never spans two words. The hashes of every prefix of the rest
    of the word (at most ``longest`` bytes, the longest piece) are computed first and looked up longest
    first: most words are a piece, found by one lookup (probing shortest first costs a lookup per byte).

    The vectors are mostly out of cache: each is prefetched when its piece is found and summed after
    the whole post is cut, in the pieces' order (``found``), so that their loads overlap."""
    cdef int64_t w, i, end, k, j, reach, best, n_found = 0, f
    cdef int32_t col, best_col
    cdef bint initial
    cdef u64 h, salt
    cdef const float* vector
    cdef float norm = 0.0, scale
    for w in range(n_words):
        i, end = words[2 * w], words[2 * w + 1]
        initial = True
        while i < end:
            salt = piece_salt(initial)
            h = 0
            reach = min(longest, end - i)
            for k in range(reach):
                h = h * P + buf[i + k]
                prefix[k] = h
            best, best_col = 0, -1
            for k in range(reach, 0, -1):
                col = column(mix(prefix[k - 1] ^ salt), pc)
                if col >= 0:
                    best, best_col = k, col
                    break
            if best:
                for j in range(0, dims, 16):  # a cache line of floats
                    __builtin_prefetch(vectors + best_col * dims + j)
                found[n_found] = best_col
                n_found += 1
                i += best
            elif not initial:
                i += 1
            initial = False
    for f in range(n_found):
        vector = vectors + found[f] * dims
        for j in range(dims):
            out[j] += vector[j]
    for j in range(dims):
        norm += out[j] * out[j]
    if norm > 0:
        scale = sqrtf(norm)
        for j in range(dims):
            out[j] /= scale


def hash_pieces(const uint8_t[::1] buf, const int64_t[::1] bounds, const uint8_t[::1] initial):
    """Hash of each piece ``buf[bounds[p]:bounds[p + 1]]``, salted as a word-start or inner piece."""
    cdef int64_t n = initial.shape[0], p, i
    cdef u64 h
    out = np.empty(n, dtype=np.uint64)
    cdef u64[::1] o = out
    with nogil:
        for p in range(n):
            h = 0
            for i in range(bounds[p], bounds[p + 1]):
                h = h * P + buf[i]
            o[p] = mix(h ^ piece_salt(initial[p]))
    return out


def hash_batch(const uint8_t[::1] clean_table, const uint8_t[::1] raw, int64_t char_min, int64_t char_max,
               int64_t word_ngrams):
    """Every n-gram occurrence of the batch: its post (int32, ascending), its hash, and the n-grams per post."""
    cdef Cleaned c
    cdef int64_t n_docs, kinds, total = 0, d, pos = 0, stop, n_words, i
    cdef int64_t* words = NULL
    cdef u64[::1] h
    cdef int32_t[::1] doc_of
    cdef int64_t[::1] per_doc
    clean(raw, clean_table, &c)
    try:
        n_docs = c.n_seps - 1
        kinds = max(char_max - char_min + 1, 0) + max(word_ngrams, 0)
        for d in range(n_docs):
            total += (c.seps[d + 1] - c.seps[d] - 1) * kinds
        hashes = np.empty(total, dtype=np.uint64)
        doc = np.empty(total, dtype=np.int32)
        totals = np.zeros(n_docs, dtype=np.int64)
        h, doc_of, per_doc = hashes, doc, totals
        words = <int64_t*>malloc(2 * bound(&c, 1) * sizeof(int64_t))
        if words == NULL:
            raise MemoryError()
        with nogil:
            for d in range(n_docs):
                n_words = split_words(c.buf, c.seps[d] + 1, c.seps[d + 1], words)
                stop = post_ngrams(
                    c.buf, c.seps[d] + 1, c.seps[d + 1], char_min, char_max, word_ngrams, words, n_words,
                    &h[0], pos,
                )
                for i in range(pos, stop):
                    doc_of[i] = <int32_t>d
                per_doc[d] = stop - pos
                pos = stop
        return doc[:pos], hashes[:pos], totals
    finally:
        free(words)
        free(c.buf)
        free(c.seps)


def build_table(const u64[::1] vocab, u64 shift):
    """``keys`` (uint64) and ``cols`` (int32) of the table of the hashes ``vocab`` (column = index in
    ``vocab``; of equal hashes, the first), home slots ``hash >> shift``.

    Inserted in ascending order, each key takes the slot after the previous one or its home, whichever
    is later: keys ascend along the slots. No slot wraps around: the table grows past 2^(64 - shift)
    slots when it must, and ends with an empty slot."""
    order = np.argsort(vocab, kind="stable")
    ascending = np.asarray(vocab)[order]
    rank = np.arange(len(order))
    slot = np.maximum.accumulate((ascending >> np.uint64(shift)).astype(np.int64) - rank) + rank
    size = max((<u64>1) << (64 - shift), int(slot.max()) + 1 if len(slot) else 0) + 1
    keys = np.full(size, EMPTY, dtype=np.uint64)
    cols = np.full(size, -1, dtype=np.int32)
    keys[slot] = ascending
    cols[slot] = order
    return keys, cols


def lookup(const u64[::1] hashes, const u64[::1] keys, const int32_t[::1] cols, u64 shift):
    """Column of each hash, -1 for one not in the table."""
    cdef Table t = table_of(keys, cols, shift)
    cdef int64_t i
    out = np.empty(hashes.shape[0], dtype=np.int32)
    cdef int32_t[::1] o = out
    with nogil:
        for i in range(hashes.shape[0]):
            o[i] = column(hashes[i], &t)
    return out


def count_batch(
    const uint8_t[::1] clean_table, const uint8_t[::1] raw, int64_t char_min, int64_t char_max,
    int64_t word_ngrams, const u64[::1] keys, const int32_t[::1] table_cols, u64 shift, int64_t n_cols,
    const u64[::1] kw_keys, const int32_t[::1] kw_cols, const int64_t[::1] kw_tags,
    const uint8_t[::1] kw_longer, u64 kw_shift, int64_t n_tags,
    const u64[::1] pc_keys, const int32_t[::1] pc_cols, u64 pc_shift, const float[:, ::1] pc_vectors,
    int64_t pc_longest,
):
    """CSR of per-post column counts (columns ascending within a post), each post's oov share,
    log1p of its keyword hits per tag ([n_docs, n_tags]) and its unit-length sum of piece vectors
    ([n_docs, dims])."""
    cdef Cleaned c
    cdef Table vt = table_of(keys, table_cols, shift)
    cdef Table kw = table_of(kw_keys, kw_cols, kw_shift)
    cdef Table pc = table_of(pc_keys, pc_cols, pc_shift)
    cdef int64_t dims = pc_vectors.shape[1], n_seen = (n_cols >> 6) + 1  # bit n_cols: misses
    cdef int64_t n_docs, kinds, capacity = 0, d, t, n_words, m, i, j, k, hits, nnz = 0, w, col, base
    cdef int32_t hit
    cdef u64 bits
    cdef u64* scratch = NULL
    cdef int64_t* words = NULL
    cdef int32_t* counts = NULL
    cdef u64* seen = NULL
    cdef u64* prefix = NULL
    cdef int32_t* found = NULL
    cdef int64_t* hits_of_tag = NULL
    cdef int64_t[::1] indptr_v, cols_v
    cdef float[::1] vals_v, oov_v
    cdef float[:, ::1] keyword_v, embedding_v
    clean(raw, clean_table, &c)
    try:
        n_docs = c.n_seps - 1
        kinds = max(char_max - char_min + 1, 0) + max(word_ngrams, 0)
        for d in range(n_docs):
            capacity += min((c.seps[d + 1] - c.seps[d] - 1) * kinds, n_cols)
        indptr = np.zeros(n_docs + 1, dtype=np.int64)
        cols = np.empty(capacity + 4, dtype=np.int64)  # pages never written are never mapped in
        vals = np.empty(capacity, dtype=np.float32)
        oov = np.zeros(n_docs, dtype=np.float32)
        keyword_hits = np.zeros((n_docs, n_tags), dtype=np.float32)
        embedding = np.zeros((n_docs, dims), dtype=np.float32)
        indptr_v, cols_v, vals_v, oov_v, keyword_v, embedding_v = indptr, cols, vals, oov, keyword_hits, embedding
        scratch = <u64*>malloc(bound(&c, kinds) * sizeof(u64))
        words = <int64_t*>malloc(2 * bound(&c, 1) * sizeof(int64_t))
        counts = <int32_t*>calloc(n_cols + 1, sizeof(int32_t))
        seen = <u64*>calloc(n_seen, sizeof(u64))  # bitmap of the post's columns
        prefix = <u64*>malloc(max(pc_longest, 1) * sizeof(u64))
        found = <int32_t*>malloc(bound(&c, 1) * sizeof(int32_t))  # a post's pieces: at most a byte each
        hits_of_tag = <int64_t*>malloc(max(n_tags, 1) * sizeof(int64_t))
        if not (scratch and words and counts and seen and prefix and found and hits_of_tag):
            raise MemoryError()
        with nogil:
            for d in range(n_docs):
                n_words = split_words(c.buf, c.seps[d] + 1, c.seps[d + 1], words)
                if n_tags:
                    for t in range(n_tags):
                        hits_of_tag[t] = 0
                    count_keywords(c.buf, words, n_words, &kw, &kw_tags[0], &kw_longer[0], hits_of_tag)
                    for t in range(n_tags):
                        keyword_v[d, t] = <float>log1p(<double>hits_of_tag[t])
                if dims:
                    embed_words(
                        c.buf, words, n_words, &pc, &pc_vectors[0, 0], dims, prefix, pc_longest, found,
                        &embedding_v[d, 0],
                    )
                m = post_ngrams(
                    c.buf, c.seps[d] + 1, c.seps[d + 1], char_min, char_max, word_ngrams, words, n_words,
                    scratch, 0,
                )
                for j in range(min(m, AHEAD)):
                    __builtin_prefetch(&vt.keys[scratch[j] >> vt.shift])
                # A miss counts in column n_cols, which is dropped: no branch on a hit to mispredict.
                for j in range(m):
                    if j + AHEAD < m:
                        __builtin_prefetch(&vt.keys[scratch[j + AHEAD] >> vt.shift])
                        __builtin_prefetch(&vt.cols[scratch[j + AHEAD] >> vt.shift])
                    hit = column(scratch[j], &vt)
                    col = hit if hit >= 0 else n_cols
                    seen[col >> 6] |= (<u64>1) << (col & 63)
                    counts[col] += 1
                hits = m - counts[n_cols]
                counts[n_cols] = 0
                seen[n_cols >> 6] &= ~((<u64>1) << (n_cols & 63))
                # Columns in ascending order from the bitmap, no sort: each word's four lowest set bits
                # are written whether or not they are set (the count only advances on a set one), so
                # the loop does not branch on how many bits a word has; a word with more ends in a loop.
                j = nnz
                for w in range(n_seen):
                    bits = seen[w]
                    seen[w] = 0
                    base = w << 6
                    for k in range(4):  # a constant count: the C compiler unrolls it, no branch left
                        cols_v[j] = base + __builtin_ctzll(bits | TOP_BIT)
                        j += bits != 0
                        bits &= bits - 1
                    while bits:
                        cols_v[j] = base + __builtin_ctzll(bits)
                        j += 1
                        bits &= bits - 1
                for i in range(nnz, j):
                    col = cols_v[i]
                    vals_v[i] = <float>counts[col]
                    counts[col] = 0
                nnz = j
                indptr_v[d + 1] = nnz
                if m:
                    oov_v[d] = <float>(1.0 - <double>hits / <double>m)
        return indptr, cols[:nnz], vals[:nnz], oov, keyword_hits, embedding
    finally:
        free(scratch)
        free(words)
        free(counts)
        free(seen)
        free(prefix)
        free(found)
        free(hits_of_tag)
        free(c.buf)
        free(c.seps)


def term_weights(const float[::1] counts, bint sublinear):
    """Each n-gram's term-frequency weight and its square, float32 [nnz] each: the ONNX graph's two sparse
    inputs, in the CSR's order. The weight is the count, or with ``sublinear`` 1 + log(count)
    (scikit-learn's ``TfidfTransformer(sublinear_tf=True)``, in float32). The log is taken in double and
    rounded once to float32, as scikit-learn takes it in double: the same float on every CPU, where
    float32 ``logf`` may differ in the last bit between libm's variants. Counts under ``SMALL_COUNTS``
    are looked up: a ``log`` per n-gram costs more than the graph's sums over it."""
    cdef int64_t i, n = counts.shape[0]
    cdef float w
    weights = np.empty(n, dtype=np.float32)
    squares = np.empty(n, dtype=np.float32)
    cdef float[::1] w_v = weights, s_v = squares
    with nogil:
        for i in range(n):
            w = counts[i]  # >= 1: the CSR holds only n-grams that occur
            if sublinear:
                w = SUBLINEAR[<int64_t>w] if 1 <= w < SMALL_COUNTS else sublinear_weight(w)
            w_v[i] = w
            s_v[i] = w * w
    return weights, squares

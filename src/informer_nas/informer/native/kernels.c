/* Native CPU kernels for the training step (see __init__.py for how they are built and used).
 *
 * gelu_bias_forward: the feed-forward block's activation, in one pass over the hidden tensor.
 * Given h = x W1^T (no bias yet), it writes a = gelu(h + b) over h and g = gelu'(h + b) into
 * `deriv`, zero at the dropped positions. The backward then needs one product, grad * g,
 * instead of ATen's gelu_backward (which evaluates erf and exp again) and zeroing the dropped
 * positions; and the bias costs nothing, instead of a broadcast copy in `addmm`.
 * gelu(v) = v Phi(v), gelu'(v) = Phi(v) + v phi(v), with Phi(v) = (1 + erf(v / sqrt 2)) / 2
 * and phi(v) = exp(-v^2 / 2) / sqrt(2 pi). erf is Abramowitz & Stegun 7.1.26 (absolute error
 * below 1.5e-7), the formula ATen's vectorised erf uses too; its exp(-x^2) is phi's, so one
 * exp per element serves both. The inner loop has no calls or branches, so it vectorises.
 *
 * probsparse_sparsity: ProbSparse attention's query sparsity M = max_j s_j - sum_j s_j / L_K
 * over each query's sampled keys j, s_j = q . k_j, for every (batch, head) pair; the caller
 * keeps the queries with the largest M. Per pair, K is transposed into a small buffer so that
 * a query's scores against all keys are one vectorised pass per feature; the sampled ones
 * are then read from that row while it is in L1.
 *
 * probsparse_attention_forward / _backward: ProbSparse attention once the kept queries are
 * chosen. Every row of the output gets the lazy value (the mean of V, or with the causal mask
 * the cumulative sum of V), the kept rows softmax(scale q K^T) V; the backward gives dQ, dK
 * and dV. Q, K, V and their gradients are read and written in the strides they come in (the
 * projections' time-major memory: no head-major copies); a thread takes one (batch, head)
 * pair at a time, whose keys and values stay in its cache. The loops over a row's features
 * are compiled with constant widths for the common head sizes (WITH_CONSTANT_WIDTHS).
 *
 * drop_positions: dropout's dropped positions from uniform draws u (see dropout.py): the gap
 * before each drop is floor(ln(1 - u) / ln(1 - p)), a drop's position is the sum of the gaps
 * and drops before it. ATen takes eight operations for this; here it is one pass that stops at
 * the first position past the tensor. ln is the Cephes single-precision polynomial.
 *
 * scale_and_zero: out = x * scale, zero at the given sorted flat positions, in one pass (each
 * thread zeroes the positions inside its own range right after scaling it).
 *
 * Rows (or pairs) are shared among OpenMP threads; each output element is computed by one
 * thread in a fixed order, so results do not depend on the thread count.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

/* exp(x) for x in [-87, 0]: Cody-Waite reduction to r in [-ln2/2, ln2/2], degree-6 poly. */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to int */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } two_n;
    two_n.i = ((int32_t)n + 127) << 23;
    return p * two_n.f;
}

static int64_t lower_bound(const int64_t *drops, int64_t n_drops, int64_t value);

void gelu_bias_forward(float *hidden, const float *bias, float *deriv, int64_t rows,
                       int64_t cols, const int64_t *drops, int64_t n_drops) {
    #pragma omp parallel
    {
        const int64_t threads = omp_get_num_threads(), thread = omp_get_thread_num();
        const int64_t first = rows * thread / threads, last = rows * (thread + 1) / threads;
        for (int64_t r = first; r < last; r++) {
            float *h = hidden + r * cols;
            float *g = deriv + r * cols;
            #pragma omp simd
            for (int64_t c = 0; c < cols; c++) {
                float v = h[c] + bias[c];
                float x = v * 0.70710678118654752f;
                float ax = x < 0.0f ? -x : x;
                float t = 1.0f / (1.0f + 0.3275911f * ax);
                float e = exp_nonpositive(-ax * ax);
                float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t
                               - 0.284496736f) * t + 0.254829592f) * t;
                float erf_ax = 1.0f - poly * e;
                float cdf = 0.5f + 0.5f * (x < 0.0f ? -erf_ax : erf_ax);
                h[c] = v * cdf;
                g[c] = cdf + v * e * 0.39894228040143268f;
            }
        }
        const int64_t end = last * cols;
        for (int64_t d = lower_bound(drops, n_drops, first * cols); d < n_drops && drops[d] < end;
             d++) {
            hidden[drops[d]] = 0.0f;
            deriv[drops[d]] = 0.0f;
        }
    }
}

/* inlined into each caller, so that constant widths (WITH_CONSTANT_WIDTHS) reach the loops */
#define INLINE static inline __attribute__((always_inline))

#define KEY_BLOCK 16  /* keys scored at once: one AVX-512 register, two AVX2 ones */
#define QUERY_BLOCK 6 /* queries scored at once: independent sums hide the FMA latency */

/* A (batch, head, time, feature) tensor whose features are contiguous: element (b, h, t, 0)
 * is at data + b * stride[0] + h * stride[1] + t * stride[2]. */
typedef struct {
    float *data;
    const int64_t *stride;
} strided;

static inline float *row_at(strided x, int64_t b, int64_t h, int64_t t) {
    return x.data + b * x.stride[0] + h * x.stride[1] + t * x.stride[2];
}

/* rows (n_rows, width) with row stride `stride` -> out (width, padded), zero past n_rows */
INLINE void transpose_rows(const float *rows, int64_t stride, int64_t n_rows, int64_t width,
                            float *out, int64_t padded) {
    for (int64_t j = 0; j < n_rows; j++)
        for (int64_t e = 0; e < width; e++) out[e * padded + j] = rows[j * stride + e];
    for (int64_t e = 0; e < width; e++)
        for (int64_t j = n_rows; j < padded; j++) out[e * padded + j] = 0.0f;
}

/* out[r][j] = sum_e a[r][e] * bt[e][j] for r < n (n <= QUERY_BLOCK), j < padded; `bt` is
 * (width, padded), `out` rows are `padded` apart. All QUERY_BLOCK entries of `a` must point to
 * rows (those past n are computed and not stored). */
INLINE void score_rows(const float *const *a, int n, const float *bt, int64_t padded,
                        int64_t width, float *out) {
    for (int64_t block = 0; block < padded; block += KEY_BLOCK) {
        float acc[QUERY_BLOCK][KEY_BLOCK] = {{0.0f}};
        for (int64_t e = 0; e < width; e++) {
            const float *b = bt + e * padded + block;
            for (int r = 0; r < QUERY_BLOCK; r++) {
                const float ae = a[r][e];
                #pragma omp simd
                for (int c = 0; c < KEY_BLOCK; c++) acc[r][c] += ae * b[c];
            }
        }
        for (int r = 0; r < n; r++)
            for (int c = 0; c < KEY_BLOCK; c++) out[r * padded + block + c] = acc[r][c];
    }
}

#define LANES 16 /* features summed at once in the products below: one AVX-512 register */

/* out[d] = sum_{j < n} weight[j] * rows[j][d] (rows `stride` apart). Four partial sums per
 * feature hide the FMA latency; with `width` a multiple of LANES they live in registers. */
INLINE void weighted_sum(
        const float *weight, const float *rows, int64_t stride, int64_t n, int64_t width,
        float *partial, float *out) {
    if (width % LANES == 0) {
        for (int64_t d0 = 0; d0 < width; d0 += LANES) {
            float acc[4][LANES] = {{0.0f}};
            int64_t j = 0;
            for (; j + 4 <= n; j += 4)
                for (int u = 0; u < 4; u++) {
                    const float w = weight[j + u], *x = rows + (j + u) * stride + d0;
                    #pragma omp simd
                    for (int c = 0; c < LANES; c++) acc[u][c] += w * x[c];
                }
            for (; j < n; j++) {
                const float w = weight[j], *x = rows + j * stride + d0;
                #pragma omp simd
                for (int c = 0; c < LANES; c++) acc[0][c] += w * x[c];
            }
            #pragma omp simd
            for (int c = 0; c < LANES; c++)
                out[d0 + c] = (acc[0][c] + acc[1][c]) + (acc[2][c] + acc[3][c]);
        }
        return;
    }
    for (int64_t i = 0; i < 4 * width; i++) partial[i] = 0.0f;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        for (int u = 0; u < 4; u++) {
            const float w = weight[j + u], *x = rows + (j + u) * stride;
            float *acc = partial + u * width;
            for (int64_t d = 0; d < width; d++) acc[d] += w * x[d];
        }
    for (; j < n; j++)
        for (int64_t d = 0; d < width; d++) partial[d] += weight[j] * rows[j * stride + d];
    for (int64_t d = 0; d < width; d++)
        out[d] = (partial[d] + partial[width + d]) + (partial[2 * width + d] +
                                                      partial[3 * width + d]);
}

/* out row j (+)= sum_{r < n_rows} weight[r * stride + j] * rows[r] for j < n_out: the product
 * weight^T rows, four output rows at a time (four independent sums per feature, in
 * registers for whole blocks of LANES features). */
INLINE void transposed_product(
        const float *weight, int64_t stride, const float *const *rows, int64_t n_rows,
        int64_t n_out, int64_t width, strided out, int64_t b, int64_t h, int accumulate) {
    for (int64_t first = 0; first < n_out; first += 4) {
        const int n = (int)(n_out - first < 4 ? n_out - first : 4);
        for (int64_t d0 = 0; d0 < width; d0 += LANES) {
            const int lanes = (int)(width - d0 < LANES ? width - d0 : LANES);
            float acc[4][LANES] = {{0.0f}};
            if (n == 4 && lanes == LANES) {
                for (int64_t r = 0; r < n_rows; r++) {
                    const float *x = rows[r] + d0, *w = weight + r * stride + first;
                    for (int u = 0; u < 4; u++) {
                        const float wu = w[u];
                        #pragma omp simd
                        for (int c = 0; c < LANES; c++) acc[u][c] += wu * x[c];
                    }
                }
            } else {
                for (int64_t r = 0; r < n_rows; r++) {
                    const float *x = rows[r] + d0, *w = weight + r * stride + first;
                    for (int u = 0; u < n; u++)
                        for (int c = 0; c < lanes; c++) acc[u][c] += w[u] * x[c];
                }
            }
            for (int u = 0; u < n; u++) {
                float *dst = row_at(out, b, h, first + u) + d0;
                for (int c = 0; c < lanes; c++)
                    dst[c] = accumulate ? dst[c] + acc[u][c] : acc[u][c];
            }
        }
    }
}

/* Returns 0, or -1 when a scratch buffer could not be allocated (then `out` is unwritten). */
int probsparse_sparsity(const float *queries, const int64_t *q_stride, const float *keys,
                        const int64_t *k_stride, const int64_t *sample, float *out,
                        int64_t batch, int64_t heads, int64_t length_q, int64_t length_k,
                        int64_t n_keys, int64_t head_dim) {
    const int64_t padded = (length_k + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    const strided q = {(float *)queries, q_stride}, k = {(float *)keys, k_stride};
    int failed = 0;
    #pragma omp parallel reduction(|:failed)
    {
        /* a pair's keys, feature-major and zero-padded; a query block's scores */
        float *keys_t = malloc(sizeof(float) * (size_t)(head_dim * padded));
        float *scores = malloc(sizeof(float) * (size_t)(QUERY_BLOCK * padded));
        if (keys_t == NULL || scores == NULL) {
            failed = 1;
        } else {
            #pragma omp for schedule(static)
            for (int64_t p = 0; p < batch * heads; p++) {
                const int64_t b = p / heads, h = p % heads;
                transpose_rows(row_at(k, b, h, 0), k.stride[2], length_k, head_dim, keys_t,
                               padded);
                for (int64_t first = 0; first < length_q; first += QUERY_BLOCK) {
                    const int n = (int)(length_q - first < QUERY_BLOCK ? length_q - first
                                                                       : QUERY_BLOCK);
                    const float *rows[QUERY_BLOCK];
                    for (int r = 0; r < QUERY_BLOCK; r++)
                        rows[r] = row_at(q, b, h, first + (r < n ? r : 0));
                    score_rows(rows, n, keys_t, padded, head_dim, scores);
                    for (int r = 0; r < n; r++) {
                        const int64_t *picked = sample + (first + r) * n_keys;
                        const float *row = scores + r * padded;
                        float top = -INFINITY, total = 0.0f;
                        for (int64_t j = 0; j < n_keys; j++) {
                            const float s = row[picked[j]];
                            top = s > top ? s : top;
                            total += s;
                        }
                        out[p * length_q + first + r] = top - total / (float)length_k;
                    }
                }
            }
        }
        free(keys_t);
        free(scores);
    }
    return failed ? -1 : 0;
}

/* ProbSparse attention's output for one (batch, head) pair; see probsparse_attention_forward.
 * Inlined with constant widths for the common head sizes, so that the loops over a row's
 * features compile to whole vector operations. */
INLINE void attention_pair(
        strided q, strided k, strided v, strided o, const int64_t *kept, float *probs,
        int64_t b, int64_t h, int64_t length_q, int64_t length_k, const int64_t head_dim,
        const int64_t value_dim, int64_t n_top, float scale, int masked, int64_t padded,
        float *keys_t, float *scores, float *partial, float *lazy) {
    const float *v0 = row_at(v, b, h, 0);
    const int64_t vt = v.stride[2];
    for (int64_t d = 0; d < value_dim; d++) lazy[d] = 0.0f;
    if (masked) { /* L_Q == L_K: row t is the sum of V's first t + 1 rows */
        for (int64_t t = 0; t < length_q; t++) {
            float *dst = row_at(o, b, h, t);
            #pragma omp simd
            for (int64_t d = 0; d < value_dim; d++) {
                lazy[d] += v0[t * vt + d];
                dst[d] = lazy[d];
            }
        }
    } else {
        for (int64_t j = 0; j < length_k; j++) {
            #pragma omp simd
            for (int64_t d = 0; d < value_dim; d++) lazy[d] += v0[j * vt + d];
        }
        for (int64_t d = 0; d < value_dim; d++) lazy[d] /= (float)length_k;
        for (int64_t t = 0; t < length_q; t++) {
            float *dst = row_at(o, b, h, t);
            #pragma omp simd
            for (int64_t d = 0; d < value_dim; d++) dst[d] = lazy[d];
        }
    }
    transpose_rows(row_at(k, b, h, 0), k.stride[2], length_k, head_dim, keys_t, padded);
    for (int64_t first = 0; first < n_top; first += QUERY_BLOCK) {
        const int n = (int)(n_top - first < QUERY_BLOCK ? n_top - first : QUERY_BLOCK);
        const float *rows[QUERY_BLOCK];
        for (int r = 0; r < QUERY_BLOCK; r++)
            rows[r] = row_at(q, b, h, kept[first + (r < n ? r : 0)]);
        score_rows(rows, n, keys_t, padded, head_dim, scores);
        for (int r = 0; r < n; r++) {
            const int64_t t = kept[first + r];
            const int64_t seen = masked ? t + 1 : length_k;
            const float *row = scores + r * padded;
            float *weight = probs + (first + r) * length_k;
            float top_score = -INFINITY;
            for (int64_t j = 0; j < seen; j++)
                top_score = row[j] > top_score ? row[j] : top_score;
            float total = 0.0f;
            #pragma omp simd reduction(+:total)
            for (int64_t j = 0; j < seen; j++) {
                weight[j] = exp_nonpositive(scale * (row[j] - top_score));
                total += weight[j];
            }
            const float inverse = 1.0f / total;
            #pragma omp simd
            for (int64_t j = 0; j < seen; j++) weight[j] *= inverse;
            for (int64_t j = seen; j < length_k; j++) weight[j] = 0.0f;
            weighted_sum(weight, v0, vt, seen, value_dim, partial, row_at(o, b, h, t));
        }
    }
}

/* Calls `body` with the widths as constants where they are a common head size. */
#define WITH_CONSTANT_WIDTHS(head_dim, value_dim, body)                                    \
    do {                                                                                   \
        if ((head_dim) == 16 && (value_dim) == 16) { body(16, 16); }                       \
        else if ((head_dim) == 32 && (value_dim) == 32) { body(32, 32); }                  \
        else if ((head_dim) == 64 && (value_dim) == 64) { body(64, 64); }                  \
        else if ((head_dim) == 8 && (value_dim) == 8) { body(8, 8); }                      \
        else { body(head_dim, value_dim); }                                                \
    } while (0)

/* ProbSparse attention's output for one forward pass. For each (batch, head) pair, every
 * query's row of `out` (B, H, L_Q, D) gets the lazy value (mean of V, or with `masked` the
 * cumulative sum of V up to the query's step), then the kept queries `top` (B, H, u) get
 * softmax(scale q K^T) V (with `masked`, over keys up to the query's step). The kept rows'
 * softmax weights are written to `probs` (B, H, u, L_K) for the backward. */
int probsparse_attention_forward(
        const float *queries, const int64_t *q_stride, const float *keys,
        const int64_t *k_stride, const float *values, const int64_t *v_stride,
        const int64_t *top, float *out, const int64_t *out_stride, float *probs,
        int64_t batch, int64_t heads, int64_t length_q, int64_t length_k, int64_t head_dim,
        int64_t value_dim, int64_t n_top, float scale, int masked) {
    const int64_t padded = (length_k + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    const strided q = {(float *)queries, q_stride}, k = {(float *)keys, k_stride},
                  v = {(float *)values, v_stride}, o = {out, out_stride};
    int failed = 0;
    #pragma omp parallel reduction(|:failed)
    {
        float *keys_t = malloc(sizeof(float) * (size_t)(head_dim * padded));
        float *scores = malloc(sizeof(float) * (size_t)(QUERY_BLOCK * padded));
        float *partial = malloc(sizeof(float) * (size_t)(4 * value_dim));
        float *lazy = malloc(sizeof(float) * (size_t)value_dim);
        if (keys_t == NULL || scores == NULL || partial == NULL || lazy == NULL) {
            failed = 1;
        } else {
            #pragma omp for schedule(static)
            for (int64_t p = 0; p < batch * heads; p++) {
#define FORWARD_PAIR(E, D)                                                                 \
                attention_pair(q, k, v, o, top + p * n_top, probs + p * n_top * length_k,  \
                               p / heads, p % heads, length_q, length_k, E, D, n_top,      \
                               scale, masked, padded, keys_t, scores, partial, lazy)
                WITH_CONSTANT_WIDTHS(head_dim, value_dim, FORWARD_PAIR);
#undef FORWARD_PAIR
            }
        }
        free(keys_t);
        free(scores);
        free(partial);
        free(lazy);
    }
    return failed ? -1 : 0;
}

/* The backward of attention_pair for one (batch, head) pair. With S the kept rows' score
 * gradients (u, L_K) and P their softmax weights: dQ[kept] = S K, dK = S^T Q[kept],
 * dV = P^T dY[kept] plus the lazy rows' share. */
INLINE void attention_pair_backward(
        strided q, strided k, strided v, strided g, strided gq, strided gk, strided gv,
        const int64_t *kept, const float *probs, int64_t b, int64_t h, int64_t length_q,
        int64_t length_k, const int64_t head_dim, const int64_t value_dim, int64_t n_top,
        float scale, int masked, int64_t padded, float *values_t, float *dots, float *slopes,
        float *partial, float *lazy, char *is_kept, const float **kept_q,
        const float **kept_g) {
    for (int64_t t = 0; t < length_q; t++) {
        float *dq = row_at(gq, b, h, t);
        #pragma omp simd
        for (int64_t e = 0; e < head_dim; e++) dq[e] = 0.0f;
        is_kept[t] = 0;
    }
    for (int64_t r = 0; r < n_top; r++) {
        is_kept[kept[r]] = 1;
        kept_q[r] = row_at(q, b, h, kept[r]);
        kept_g[r] = row_at(g, b, h, kept[r]);
    }
    /* the lazy queries' share of dV, written first */
    for (int64_t d = 0; d < value_dim; d++) lazy[d] = 0.0f;
    if (masked) { /* dV[j] = sum of the lazy rows' gradients at steps >= j */
        for (int64_t t = length_q - 1; t >= 0; t--) {
            const float *dy = row_at(g, b, h, t);
            float *dv = row_at(gv, b, h, t);
            const float lazy_row = is_kept[t] ? 0.0f : 1.0f;
            #pragma omp simd
            for (int64_t d = 0; d < value_dim; d++) {
                lazy[d] += lazy_row * dy[d];
                dv[d] = lazy[d];
            }
        }
    } else { /* each V row gets 1 / L_K of every lazy row's gradient */
        for (int64_t t = 0; t < length_q; t++) {
            if (is_kept[t]) continue;
            const float *dy = row_at(g, b, h, t);
            #pragma omp simd
            for (int64_t d = 0; d < value_dim; d++) lazy[d] += dy[d];
        }
        for (int64_t d = 0; d < value_dim; d++) lazy[d] /= (float)length_k;
        for (int64_t j = 0; j < length_k; j++) {
            float *dv = row_at(gv, b, h, j);
            #pragma omp simd
            for (int64_t d = 0; d < value_dim; d++) dv[d] = lazy[d];
        }
    }
    /* S = P (dP - sum(P dP)) scale, dP = dY V^T, zero past a masked row's step */
    const float *k0 = row_at(k, b, h, 0);
    transpose_rows(row_at(v, b, h, 0), v.stride[2], length_k, value_dim, values_t, padded);
    for (int64_t first = 0; first < n_top; first += QUERY_BLOCK) {
        const int n = (int)(n_top - first < QUERY_BLOCK ? n_top - first : QUERY_BLOCK);
        const float *rows[QUERY_BLOCK];
        for (int r = 0; r < QUERY_BLOCK; r++) rows[r] = kept_g[first + (r < n ? r : 0)];
        score_rows(rows, n, values_t, padded, value_dim, dots);
        for (int r = 0; r < n; r++) {
            const int64_t t = kept[first + r];
            const int64_t seen = masked ? t + 1 : length_k;
            const float *weight = probs + (first + r) * length_k;
            const float *dp = dots + r * padded;
            float *slope = slopes + (first + r) * padded;
            float mean = 0.0f;
            #pragma omp simd reduction(+:mean)
            for (int64_t j = 0; j < seen; j++) mean += weight[j] * dp[j];
            #pragma omp simd
            for (int64_t j = 0; j < seen; j++) slope[j] = weight[j] * (dp[j] - mean) * scale;
            for (int64_t j = seen; j < length_k; j++) slope[j] = 0.0f;
            weighted_sum(slope, k0, k.stride[2], seen, head_dim, partial, row_at(gq, b, h, t));
        }
    }
    transposed_product(slopes, padded, kept_q, n_top, length_k, head_dim, gk, b, h, 0);
    transposed_product(probs, length_k, kept_g, n_top, length_k, value_dim, gv, b, h, 1);
}

/* The backward of probsparse_attention_forward: from the output's gradient `grad_out`, the
 * gradients of Q, K and V (each written whole, zero where nothing flows). */
int probsparse_attention_backward(
        const float *queries, const int64_t *q_stride, const float *keys,
        const int64_t *k_stride, const float *values, const int64_t *v_stride,
        const int64_t *top, const float *probs, const float *grad_out,
        const int64_t *g_stride, float *grad_q, const int64_t *gq_stride, float *grad_k,
        const int64_t *gk_stride, float *grad_v, const int64_t *gv_stride,
        int64_t batch, int64_t heads, int64_t length_q, int64_t length_k, int64_t head_dim,
        int64_t value_dim, int64_t n_top, float scale, int masked) {
    const int64_t padded = (length_k + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    const strided q = {(float *)queries, q_stride}, k = {(float *)keys, k_stride},
                  v = {(float *)values, v_stride}, g = {(float *)grad_out, g_stride},
                  gq = {grad_q, gq_stride}, gk = {grad_k, gk_stride}, gv = {grad_v, gv_stride};
    int failed = 0;
    #pragma omp parallel reduction(|:failed)
    {
        float *values_t = malloc(sizeof(float) * (size_t)(value_dim * padded));
        float *dots = malloc(sizeof(float) * (size_t)(QUERY_BLOCK * padded));
        float *slopes = malloc(sizeof(float) * (size_t)(n_top * padded));
        float *partial = malloc(sizeof(float) * (size_t)(4 * head_dim));
        float *lazy = malloc(sizeof(float) * (size_t)value_dim);
        char *is_kept = malloc((size_t)length_q);
        const float **kept_rows = malloc(sizeof(float *) * (size_t)(2 * n_top));
        if (values_t == NULL || dots == NULL || slopes == NULL || partial == NULL ||
            lazy == NULL || is_kept == NULL || kept_rows == NULL) {
            failed = 1;
        } else {
            #pragma omp for schedule(static)
            for (int64_t p = 0; p < batch * heads; p++) {
#define BACKWARD_PAIR(E, D)                                                                \
                attention_pair_backward(q, k, v, g, gq, gk, gv, top + p * n_top,           \
                                        probs + p * n_top * length_k, p / heads, p % heads,\
                                        length_q, length_k, E, D, n_top, scale, masked,    \
                                        padded, values_t, dots, slopes, partial, lazy,     \
                                        is_kept, kept_rows, kept_rows + n_top)
                WITH_CONSTANT_WIDTHS(head_dim, value_dim, BACKWARD_PAIR);
#undef BACKWARD_PAIR
            }
        }
        free(values_t);
        free(dots);
        free(slopes);
        free(partial);
        free(lazy);
        free(is_kept);
        free(kept_rows);
    }
    return failed ? -1 : 0;
}

/* ln(x) for normal x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)), Cephes' logf polynomial
 * in m - 1 (relative error about 1e-7). Branch-free, so it vectorises. */
static inline float log_positive(float x) {
    union { float f; int32_t i; } bits = { x };
    float e = (float)(((bits.i >> 23) & 0xff) - 127);
    bits.i = (bits.i & 0x007fffff) | 0x3f800000; /* m in [1, 2) */
    const int high = bits.f > 1.41421356237f;
    const float m = high ? 0.5f * bits.f : bits.f;
    e = high ? e + 1.0f : e;
    const float f = m - 1.0f, z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return f + y + 0.693359375f * e;
}

#define GAP_CHUNK 1024 /* draws turned into gaps at once (vectorised), then summed */

/* Writes positions[k] = start - 1 + sum_{i<=k} (gap_i + 1) until one reaches n_elements;
 * returns how many are below it (all n_draws when none reaches it). */
int64_t drop_positions(const float *uniform, int64_t n_draws, float log_keep, int64_t start,
                       int64_t n_elements, int64_t *positions) {
    int64_t gaps[GAP_CHUNK];
    int64_t position = start - 1;
    for (int64_t first = 0; first < n_draws; first += GAP_CHUNK) {
        const int64_t count = n_draws - first < GAP_CHUNK ? n_draws - first : GAP_CHUNK;
        #pragma omp simd
        for (int64_t i = 0; i < count; i++)
            gaps[i] = (int64_t)(log_positive(1.0f - uniform[first + i]) / log_keep);
        for (int64_t i = 0; i < count; i++) {
            position += gaps[i] + 1;
            if (position >= n_elements) return first + i;
            positions[first + i] = position;
        }
    }
    return n_draws;
}

/* The first index of sorted `drops` not below `value`. */
static int64_t lower_bound(const int64_t *drops, int64_t n_drops, int64_t value) {
    int64_t low = 0, high = n_drops;
    while (low < high) {
        const int64_t mid = low + (high - low) / 2;
        if (drops[mid] < value) low = mid + 1; else high = mid;
    }
    return low;
}

void scale_and_zero(const float *x, float *out, int64_t n, float scale, const int64_t *drops,
                    int64_t n_drops) {
    #pragma omp parallel
    {
        const int64_t threads = omp_get_num_threads(), thread = omp_get_thread_num();
        const int64_t first = n * thread / threads, last = n * (thread + 1) / threads;
        #pragma omp simd
        for (int64_t i = first; i < last; i++) out[i] = x[i] * scale;
        for (int64_t d = lower_bound(drops, n_drops, first); d < n_drops && drops[d] < last; d++)
            out[drops[d]] = 0.0f;
    }
}

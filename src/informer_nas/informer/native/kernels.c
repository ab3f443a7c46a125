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

#define KEY_BLOCK 16  /* keys scored at once: one AVX-512 register, two AVX2 ones */
#define QUERY_BLOCK 6 /* queries scored at once: independent sums hide the FMA latency */

/* Returns 0, or -1 when a scratch buffer could not be allocated (then `out` is unwritten). */
int probsparse_sparsity(const float *queries, const float *keys, const int64_t *sample,
                        float *out, int64_t pairs, int64_t length_q, int64_t length_k,
                        int64_t n_keys, int64_t head_dim) {
    const int64_t padded = (length_k + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    int failed = 0;
    #pragma omp parallel reduction(|:failed)
    {
        /* this pair's keys, feature-major and zero-padded to whole blocks; a query block's
         * scores against all keys */
        float *keys_t = calloc((size_t)(head_dim * padded), sizeof(float));
        float *scores = malloc(sizeof(float) * (size_t)(QUERY_BLOCK * padded));
        if (keys_t == NULL || scores == NULL) {
            failed = 1;
        } else {
            #pragma omp for schedule(static)
            for (int64_t p = 0; p < pairs; p++) {
                const float *k = keys + p * length_k * head_dim;
                for (int64_t j = 0; j < length_k; j++)
                    for (int64_t e = 0; e < head_dim; e++)
                        keys_t[e * padded + j] = k[j * head_dim + e];
                for (int64_t first = 0; first < length_q; first += QUERY_BLOCK) {
                    const float *q[QUERY_BLOCK]; /* past the last query: the last, unused */
                    for (int r = 0; r < QUERY_BLOCK; r++) {
                        const int64_t i = first + r < length_q ? first + r : length_q - 1;
                        q[r] = queries + (p * length_q + i) * head_dim;
                    }
                    for (int64_t block = 0; block < padded; block += KEY_BLOCK) {
                        float acc[QUERY_BLOCK][KEY_BLOCK] = {{0.0f}};
                        for (int64_t e = 0; e < head_dim; e++) {
                            const float *kt = keys_t + e * padded + block;
                            for (int r = 0; r < QUERY_BLOCK; r++) {
                                const float qe = q[r][e];
                                #pragma omp simd
                                for (int c = 0; c < KEY_BLOCK; c++) acc[r][c] += qe * kt[c];
                            }
                        }
                        for (int r = 0; r < QUERY_BLOCK; r++)
                            for (int c = 0; c < KEY_BLOCK; c++)
                                scores[r * padded + block + c] = acc[r][c];
                    }
                    for (int r = 0; r < QUERY_BLOCK && first + r < length_q; r++) {
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

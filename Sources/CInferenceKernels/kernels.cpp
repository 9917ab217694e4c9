// The ConvLSTM engine's SIMD kernels (see include/CInferenceKernels.h). Each kernel is a
// template over the vector width VW, instantiated inside three functions with different
// target attributes; always_inline makes the template's body compile for that target.
#include "CInferenceKernels.h"

#include <atomic>
#include <string.h>
#include <type_traits>

#define INLINE __attribute__((always_inline)) inline

namespace {

template <int VW> struct V {
    typedef float F __attribute__((vector_size(VW * 4)));
    typedef int I __attribute__((vector_size(VW * 4)));
};

template <int VW> INLINE typename V<VW>::F load(const float *p) {
    typename V<VW>::F v;
    memcpy(&v, p, sizeof v);
    return v;
}
template <int VW> INLINE void store(float *p, typename V<VW>::F v) { memcpy(p, &v, sizeof v); }
// (Not `F{} + s`: 0 + s is not s for s = −0, so that costs an add before the broadcast.)
template <int VW> INLINE typename V<VW>::F splat(float s) {
    typename V<VW>::F v;
    for (int i = 0; i < VW; i++) v[i] = s;
    return v;
}

// Runs body(width, i) over [0, n) in chunks of VW, then of 8 and 4, then one at a time;
// `width` is a std::integral_constant so the body is compiled for each width.
template <int VW, typename Body> INLINE void chunks(int n, Body body) {
    int i = 0;
    for (; i + VW <= n; i += VW) body(std::integral_constant<int, VW>{}, i);
    if constexpr (VW > 8)
        if (i + 8 <= n) { body(std::integral_constant<int, 8>{}, i); i += 8; }
    if constexpr (VW > 4)
        if (i + 4 <= n) { body(std::integral_constant<int, 4>{}, i); i += 4; }
    for (; i < n; i++) body(std::integral_constant<int, 1>{}, i);
}

// e^x: x = n·ln2 + r with |r| ≤ ln2/2 (n found with the 1.5·2^23 rounding trick), e^r by
// its degree-6 Taylor polynomial, 2^n built in the exponent bits. Relative error ≈ 2e-7
// on [−87, 88], the clamp range.
template <int VW> INLINE typename V<VW>::F vexp(typename V<VW>::F x) {
    typedef typename V<VW>::F F;
    typedef typename V<VW>::I I;
    x = __builtin_elementwise_min(__builtin_elementwise_max(x, splat<VW>(-87.f)), splat<VW>(88.f));
    const float magic = 12582912.f;
    F t = x * 1.44269504f + magic;
    F n = t - magic;
    F r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187e-6f;
    F p = splat<VW>(1.f / 720);
    p = p * r + 1.f / 120;
    p = p * r + 1.f / 24;
    p = p * r + 1.f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    I bits = ((I)t - 0x4B400000 + 127) << 23;
    return p * (F)bits;
}
template <int VW> INLINE typename V<VW>::F sigm(typename V<VW>::F x) { return 1.f / (1.f + vexp<VW>(-x)); }
template <int VW> INLINE typename V<VW>::F vtanh(typename V<VW>::F x) { return 2.f / (1.f + vexp<VW>(-2.f * x)) - 1.f; }

// The cell: c ← σ(f)·c + σ(i)·tanh(g), h ← σ(o)·tanh(c).
template <int VW>
INLINE void cell(typename V<VW>::F zi, typename V<VW>::F zf, typename V<VW>::F zc, typename V<VW>::F zo,
                 typename V<VW>::F &c, typename V<VW>::F &h) {
    c = sigm<VW>(zf) * c + sigm<VW>(zi) * vtanh<VW>(zc);
    h = sigm<VW>(zo) * vtanh<VW>(c);
}

template <int VW> INLINE void addImpl(float *y, const float *x, long n) {
    long i = 0;
    for (; i + VW <= n; i += VW) store<VW>(y + i, load<VW>(y + i) + load<VW>(x + i));
    for (; i < n; i++) y[i] += x[i];
}

// ---- gates on channels-last z ------------------------------------------------------------

template <int VW> INLINE void gatesAt(const float *z, const float *b, float *c, float *h, int f, int j) {
    typedef typename V<VW>::F F;
    F cv = load<VW>(c + j), hv;
    cell<VW>(load<VW>(z + j) + load<VW>(b + j), load<VW>(z + f + j) + load<VW>(b + f + j),
             load<VW>(z + 2 * f + j) + load<VW>(b + 2 * f + j), load<VW>(z + 3 * f + j) + load<VW>(b + 3 * f + j), cv, hv);
    store<VW>(c + j, cv);
    store<VW>(h + j, hv);
}

template <int VW> INLINE void gatesImpl(const float *z, const float *b, float *c, float *h, long n, int f) {
    for (long v = 0; v < n; v++) {
        const float *zr = z + v * 4 * f;
        float *cr = c + v * f, *hr = h + v * f;
        chunks<VW>(f, [&](auto w, int j) __attribute__((always_inline)) { gatesAt<decltype(w)::value>(zr, b, cr, hr, f, j); });
    }
}

// ---- direct convolution on channel planes --------------------------------------------------

// Outputs are packed in groups of this many columns (the last group may be smaller, always
// a multiple of 4 since 4f is); a vector width runs a group in passes of R ≤ its register budget.
constexpr int kGroup = 24;

long planeSize(const cik_planes *s) { return (long)(s->height + 2 * s->pad) * s->stride; }

// R pre-activations for VW voxels of one row, starting at plane offset `at`: bias plus
// the x and h convolutions, into zbuf (R vectors). `w` walks the group's packed rows.
template <int VW, int R>
INLINE void directPass(const cik_planes *s, long plane, const float *w, int gs, const float *bias, const float *x,
                       const float *hp, long at, float *zbuf) {
    typedef typename V<VW>::F F;
    F acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = splat<VW>(bias[r]);
    const int stride = s->stride;
    for (int part = 0; part < 2; part++) {
        const int k = part == 0 ? s->kx : s->kh, channels = part == 0 ? s->cx : s->f;
        const float *src = (part == 0 ? x : hp) + at - (long)(k / 2) * stride - k / 2;
        for (int ch = 0; ch < channels; ch++, src += plane) {
            for (int dy = 0; dy < k; dy++) {
                for (int dx = 0; dx < k; dx++, w += gs) {
                    F v = load<VW>(src + (long)dy * stride + dx);
#pragma unroll
                    for (int r = 0; r < R; r++) acc[r] += v * w[r];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) store<VW>(zbuf + r * VW, acc[r]);
}

template <int VW, int RMAX>
INLINE void directStepImpl(const cik_planes *s, const float *packed, const float *bias, const float *x,
                           const float *hp, float *c, float *h, int row0, int row1) {
    typedef typename V<VW>::F F;
    typedef typename V<VW>::I I;
    const int f = s->f, f4 = 4 * f;
    const long plane = planeSize(s);
    const long kin = (long)s->cx * s->kx * s->kx + (long)f * s->kh * s->kh;
    float zbuf[256 * VW];   // 4f ≤ 256 (checked by the caller)
    static const float iota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const F lane = load<VW>(iota);
    for (int y = row0; y < row1; y++) {
        for (int x0 = 0; x0 < s->width; x0 += VW) {
            const long at = (long)(y + s->pad) * s->stride + s->pad + x0;
            for (int o0 = 0; o0 < f4; o0 += kGroup) {
                const int gs = f4 - o0 < kGroup ? f4 - o0 : kGroup;
                const float *wg = packed + o0 * kin;
                for (int sub = 0; sub < gs; sub += RMAX) {
                    const int r = gs - sub < RMAX ? gs - sub : RMAX;
                    const float *w = wg + sub, *b = bias + o0 + sub;
                    float *zb = zbuf + (o0 + sub) * VW;
                    switch (r) {
                    case 4: directPass<VW, 4>(s, plane, w, gs, b, x, hp, at, zb); break;
                    case 8: directPass<VW, 8>(s, plane, w, gs, b, x, hp, at, zb); break;
                    case 12: directPass<VW, 12>(s, plane, w, gs, b, x, hp, at, zb); break;
                    case 16: directPass<VW, (RMAX >= 16 ? 16 : 4)>(s, plane, w, gs, b, x, hp, at, zb); break;
                    case 20: directPass<VW, (RMAX >= 20 ? 20 : 4)>(s, plane, w, gs, b, x, hp, at, zb); break;
                    default: directPass<VW, (RMAX >= 24 ? 24 : 4)>(s, plane, w, gs, b, x, hp, at, zb); break;
                    }
                }
            }
            // Lanes past the row's end must leave h zero: it is the next step's padding.
            const I keep = lane < (float)(s->width - x0);
            for (int j = 0; j < f; j++) {
                F cv = load<VW>(c + j * plane + at), hv;
                cell<VW>(load<VW>(zbuf + j * VW), load<VW>(zbuf + (f + j) * VW), load<VW>(zbuf + (2 * f + j) * VW),
                         load<VW>(zbuf + (3 * f + j) * VW), cv, hv);
                store<VW>(c + j * plane + at, cv);
                store<VW>(h + j * plane + at, (F)((I)hv & keep));
            }
        }
    }
}

// ---- Winograd F(m×m, 3×3) ------------------------------------------------------------------
// Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A on tiles of n = m + 2 inputs (Lavin & Gray 2016), m = 2 or 4.
// The n² elementwise products over channels are n² matrix products per band of tiles.

template <int M> struct Wino;
template <> struct Wino<2> {
    static constexpr int N = 4;
    static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
    static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
    static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
};
// Points 0, 1, −1, 2, −1/2 and ∞ rather than the usual 0, ±1, ±2, ∞: in float32 the
// relative error of a 64-channel tile measured 1.3e-6 (median) against 2.0e-6, and 3.8e-6
// against 9.7e-6 at worst (F(2×2, 3×3): 2.5e-7); Bᵀ solved from Aᵀ and G (Cook–Toom).
template <> struct Wino<4> {
    static constexpr int N = 6;
    static constexpr float BT[6][6] = {{1, 1.5f, -2, -1.5f, 1, 0}, {0, -1, -2.5f, -0.5f, 1, 0}, {0, 1, 0.5f, -2.5f, 1, 0},
                                       {0, -0.5f, -1, 0.5f, 1, 0}, {0, 2, -1, -2, 1, 0},          {0, 1, 1.5f, -2, -1.5f, 1}};
    static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -0.5f, 0}, {0, 1, 1, 4, 0.25f, 0}, {0, 1, -1, 8, -0.125f, 1}};
    static constexpr double G[6][3] = {{1, 0, 0},
                                       {-1.0 / 3, -1.0 / 3, -1.0 / 3},
                                       {1.0 / 3, -1.0 / 3, 1.0 / 3},
                                       {1.0 / 15, 2.0 / 15, 4.0 / 15},
                                       {-16.0 / 15, 8.0 / 15, -4.0 / 15},
                                       {0, 0, 1}};
};

// Σ_k c[k]·x[k] for a constant row c: zero terms vanish and ±1 terms are adds once unrolled.
template <int VW, int K>
INLINE typename V<VW>::F combine(const float (&c)[K], const typename V<VW>::F *x, long stride = 1) {
    typename V<VW>::F r = splat<VW>(0);
    bool first = true;
#pragma unroll
    for (int k = 0; k < K; k++) {
        const float w = c[k];
        const typename V<VW>::F v = x[k * stride];
        if (w == 0) continue;
        if (first) r = w == 1 ? v : w == -1 ? -v : w * v;
        else r = w == 1 ? r + v : w == -1 ? r - v : r + w * v;
        first = false;
    }
    return r;
}

// Tiles per band: a band's transformed inputs and products stay in L2 (16 to 128 measured
// within 10 % of each other on 256-wide maps, 32 the best).
constexpr int kBand = 32;
constexpr int kOverhang = 8;   // rows past a band's last tile that the last micro-tile may touch

int winoRows(const cik_wino *s) { return s->tile * ((s->height + s->tile - 1) / s->tile) + 2; }
int winoCols(const cik_wino *s) { return s->tile * ((s->width + s->tile - 1) / s->tile) + 2; }

// Bᵀ d B for one n×n tile of C channels at `src` (padded channels-last, row pitch `pitch`
// floats), channels [ch, ch + VW), into V[ξ][ch] (ξ stride `xs`).
template <int M, int VW>
INLINE void inputTile(const float *src, long pitch, int C, int ch, float *v, long xs) {
    typedef typename V<VW>::F F;
    constexpr int N = Wino<M>::N;
    F d[N][N], t[N][N];
#pragma unroll
    for (int i = 0; i < N; i++)
#pragma unroll
        for (int j = 0; j < N; j++) d[i][j] = load<VW>(src + i * pitch + j * C + ch);
#pragma unroll
    for (int a = 0; a < N; a++)
#pragma unroll
        for (int j = 0; j < N; j++) t[a][j] = combine<VW, N>(Wino<M>::BT[a], &d[0][j], N);
#pragma unroll
    for (int a = 0; a < N; a++)
#pragma unroll
        for (int b = 0; b < N; b++) store<VW>(v + (a * N + b) * xs + ch, combine<VW, N>(Wino<M>::BT[b], t[a]));
}

template <int M, int VW> INLINE void inputTiles(const float *src, long pitch, int C, float *v, long xs) {
    chunks<VW>(C, [&](auto w, int ch) __attribute__((always_inline)) { inputTile<M, decltype(w)::value>(src, pitch, C, ch, v, xs); });
}

// Aᵀ m A plus the bias for one gate: n² products (ξ stride xs) → m² outputs into y.
template <int M, int VW>
INLINE void outputTile(const float *m, long xs, typename V<VW>::F b, float *y) {
    typedef typename V<VW>::F F;
    constexpr int N = Wino<M>::N;
    F s[M][N];
#pragma unroll
    for (int j = 0; j < N; j++) {
        F col[N];
#pragma unroll
        for (int a = 0; a < N; a++) col[a] = load<VW>(m + (a * N + j) * xs);
#pragma unroll
        for (int i = 0; i < M; i++) s[i][j] = combine<VW, N>(Wino<M>::AT[i], col);
    }
#pragma unroll
    for (int i = 0; i < M; i++)
#pragma unroll
        for (int k = 0; k < M; k++) store<VW>(y + (i * M + k) * VW, combine<VW, N>(Wino<M>::AT[k], s[i]) + b);
}

// Output transform and cell for channels [j, j + VW) of one tile whose top-left output voxel
// is at padded position `px` (c and h indexed the same); the tile's rows and columns inside
// the map are `rows` and `cols`.
template <int M, int VW>
INLINE void outputCell(const float *m, long xs, const float *bias, int f, int j, float *c, float *h, long px,
                       long pitch, int rows, int cols) {
    typedef typename V<VW>::F F;
    float z[4][M * M * VW];
#pragma unroll
    for (int g = 0; g < 4; g++) outputTile<M, VW>(m + g * f + j, xs, load<VW>(bias + g * f + j), z[g]);
    for (int i = 0; i < rows; i++) {
        for (int k = 0; k < cols; k++) {
            const int p = (i * M + k) * VW;
            const long at = px + i * pitch + k * f + j;
            F cv = load<VW>(c + at), hv;
            cell<VW>(load<VW>(z[0] + p), load<VW>(z[1] + p), load<VW>(z[2] + p), load<VW>(z[3] + p), cv, hv);
            store<VW>(c + at, cv);
            store<VW>(h + at, hv);
        }
    }
}

// Register blocking of the product V_ξ · U_ξ: MR tiles × NR vectors of outputs.
template <int VW> constexpr int maxNR() { return VW == 16 ? 8 : 4; }
template <int VW, int NR> constexpr int blockMR() {
    return VW == 16 ? (NR == 8 ? 3 : NR == 4 ? 6 : 8) : (NR == 4 ? 3 : NR == 2 ? 6 : 8);
}

template <int VW, int MR, int NR>
INLINE void microKernel(const float *a, int lda, const float *b, int ldb, float *out, int ldo, int K) {
    typedef typename V<VW>::F F;
    F acc[MR][NR];
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
        for (int n = 0; n < NR; n++) acc[m][n] = splat<VW>(0);
    for (int k = 0; k < K; k++) {
        F av[MR];
#pragma unroll
        for (int m = 0; m < MR; m++) av[m] = splat<VW>(a[m * lda + k]);
#pragma unroll
        for (int n = 0; n < NR; n++) {
            F bv = load<VW>(b + (long)k * ldb + n * VW);
#pragma unroll
            for (int m = 0; m < MR; m++) acc[m][n] += av[m] * bv;
        }
    }
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
        for (int n = 0; n < NR; n++) store<VW>(out + m * ldo + n * VW, acc[m][n]);
}

// out[rows × cols] = a[rows × K] · b[K × cols] for rows rounded up to the block height.
template <int VW, int NR>
INLINE void gemmColumns(const float *a, int K, const float *b, int ldb, float *out, int ldo, int rows) {
    constexpr int MR = blockMR<VW, NR>();
    for (int m0 = 0; m0 < rows; m0 += MR) microKernel<VW, MR, NR>(a + (long)m0 * K, K, b, ldb, out + (long)m0 * ldo, ldo, K);
}

template <int M, int VW>
INLINE void winoStepImpl(const cik_wino *s, const float *u, const float *bias, const float *x, const float *hp,
                         float *c, float *h, float *scratch) {
    constexpr int N = Wino<M>::N, NN = N * N, BT = kBand;
    const int cx = s->cx, f = s->f, ct = cx + f, f4 = 4 * f;
    const int TH = (s->height + M - 1) / M, TW = (s->width + M - 1) / M;
    const long cols = winoCols(s);
    const long xs = (long)(BT + kOverhang) * ct, ms = (long)(BT + kOverhang) * f4;   // ξ strides of V and M
    float *vb = scratch, *mb = scratch + NN * xs;
    for (int ty = 0; ty < TH; ty++) {
        for (int tx0 = 0; tx0 < TW; tx0 += BT) {
            const int nt = TW - tx0 < BT ? TW - tx0 : BT;
            for (int t = 0; t < nt; t++) {
                const long at = (long)M * ty * cols + (long)M * (tx0 + t);
                inputTiles<M, VW>(x + at * cx, cols * cx, cx, vb + (long)t * ct, xs);
                inputTiles<M, VW>(hp + at * f, cols * f, f, vb + (long)t * ct + cx, xs);
            }
            for (int xi = 0; xi < NN; xi++) {
                const float *a = vb + xi * xs, *b = u + (long)xi * ct * f4;
                float *out = mb + xi * ms;
                // Columns in blocks of NR vectors, then what is left (4f is a multiple of 4)
                // in vectors of 8 and 4.
                int n0 = 0;
                const int nvec = f4 / VW;
                for (; n0 + maxNR<VW>() <= nvec; n0 += maxNR<VW>())
                    gemmColumns<VW, maxNR<VW>()>(a, ct, b + n0 * VW, f4, out + n0 * VW, f4, nt);
                if (maxNR<VW>() > 4 && n0 + 4 <= nvec) { gemmColumns<VW, 4>(a, ct, b + n0 * VW, f4, out + n0 * VW, f4, nt); n0 += 4; }
                if (n0 + 2 <= nvec) { gemmColumns<VW, 2>(a, ct, b + n0 * VW, f4, out + n0 * VW, f4, nt); n0 += 2; }
                if (n0 + 1 <= nvec) { gemmColumns<VW, 1>(a, ct, b + n0 * VW, f4, out + n0 * VW, f4, nt); n0 += 1; }
                int col = n0 * VW;
                if constexpr (VW > 8)
                    if (col + 8 <= f4) { gemmColumns<8, 1>(a, ct, b + col, f4, out + col, f4, nt); col += 8; }
                if constexpr (VW > 4)
                    if (col + 4 <= f4) { gemmColumns<4, 1>(a, ct, b + col, f4, out + col, f4, nt); col += 4; }
            }
            for (int t = 0; t < nt; t++) {
                const int y = M * ty, xx = M * (tx0 + t);
                const int rows = s->height - y < M ? s->height - y : M, cs = s->width - xx < M ? s->width - xx : M;
                const long px = ((long)(y + 1) * cols + xx + 1) * f;
                const float *m = mb + (long)t * f4;
                chunks<VW>(f, [&](auto w, int j) __attribute__((always_inline)) {
                    outputCell<M, decltype(w)::value>(m, ms, bias, f, j, c, h, px, cols * f, rows, cs);
                });
            }
        }
    }
}

template <int VW>
INLINE void winoStepAny(const cik_wino *s, const float *u, const float *bias, const float *x, const float *hp,
                        float *c, float *h, float *scratch) {
    if (s->tile == 4) winoStepImpl<4, VW>(s, u, bias, x, hp, c, h, scratch);
    else winoStepImpl<2, VW>(s, u, bias, x, hp, c, h, scratch);
}

// Weights: U = G g Gᵀ per input channel and output, in double, then rounded once.
template <int M> void winoPack(const cik_wino *s, const float *w, float *u) {
    constexpr int N = Wino<M>::N;
    const auto &G = Wino<M>::G;
    const int cx = s->cx, f = s->f, ct = cx + f, f4 = 4 * f;
    for (int ch = 0; ch < ct; ch++) {
        for (int o = 0; o < f4; o++) {
            double g[3][3], gg[N][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    const long row = ch < cx ? (long)(ky * 3 + kx) * cx + ch : 9L * cx + (long)(ky * 3 + kx) * f + (ch - cx);
                    g[ky][kx] = w[row * f4 + o];
                }
            for (int a = 0; a < N; a++)
                for (int kx = 0; kx < 3; kx++) gg[a][kx] = G[a][0] * g[0][kx] + G[a][1] * g[1][kx] + G[a][2] * g[2][kx];
            for (int a = 0; a < N; a++)
                for (int b = 0; b < N; b++)
                    u[((long)(a * N + b) * ct + ch) * f4 + o] = (float)(gg[a][0] * G[b][0] + gg[a][1] * G[b][1] + gg[a][2] * G[b][2]);
        }
    }
}

// ---- instantiation and dispatch ------------------------------------------------------------

struct Table {
    void (*add)(float *, const float *, long);
    void (*gates)(const float *, const float *, float *, float *, long, int);
    void (*directStep)(const cik_planes *, const float *, const float *, const float *, const float *, float *, float *, int, int);
    void (*winoStep)(const cik_wino *, const float *, const float *, const float *, const float *, float *, float *, float *);
};

#define CIK_LEVEL(NAME, TARGET, VW, RMAX)                                                                          \
    TARGET void add_##NAME(float *y, const float *x, long n) { addImpl<VW>(y, x, n); }                            \
    TARGET void gates_##NAME(const float *z, const float *b, float *c, float *h, long n, int f) {                  \
        gatesImpl<VW>(z, b, c, h, n, f);                                                                           \
    }                                                                                                              \
    TARGET void direct_##NAME(const cik_planes *s, const float *w, const float *b, const float *x, const float *hp, \
                              float *c, float *h, int r0, int r1) {                                                \
        directStepImpl<VW, RMAX>(s, w, b, x, hp, c, h, r0, r1);                                                    \
    }                                                                                                              \
    TARGET void wino_##NAME(const cik_wino *s, const float *u, const float *b, const float *x, const float *hp,   \
                            float *c, float *h, float *scratch) {                                                  \
        winoStepAny<VW>(s, u, b, x, hp, c, h, scratch);                                                           \
    }                                                                                                              \
    const Table table_##NAME = {add_##NAME, gates_##NAME, direct_##NAME, wino_##NAME};

CIK_LEVEL(avx512, __attribute__((target("avx512f"))), 16, 24)
CIK_LEVEL(avx2, __attribute__((target("avx2,fma"))), 8, 12)
CIK_LEVEL(sse2, , 4, 12)

int cpuLevel() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
}

std::atomic<int> maxLevel{2};

const Table &table() {
    static const int cpu = cpuLevel();
    const int l = cpu < maxLevel.load(std::memory_order_relaxed) ? cpu : maxLevel.load(std::memory_order_relaxed);
    return l == 2 ? table_avx512 : l == 1 ? table_avx2 : table_sse2;
}

} // namespace

extern "C" {

int cik_level(void) {
    const Table &t = table();
    return &t == &table_avx512 ? 2 : &t == &table_avx2 ? 1 : 0;
}

int cik_set_max_level(int level) {
    maxLevel.store(level < 0 ? 2 : level);
    return cik_level();
}

void cik_add(float *y, const float *x, long n) { table().add(y, x, n); }

void cik_gates(const float *z, const float *bias, float *c, float *h, long n, int f) { table().gates(z, bias, c, h, n, f); }

long cik_plane_size(const cik_planes *s) { return planeSize(s); }

void cik_direct_pack(const cik_planes *s, const float *w, float *packed) {
    const int f4 = 4 * s->f;
    const long xrows = (long)s->kx * s->kx * s->cx;
    long k = 0;
    for (int o0 = 0; o0 < f4; o0 += kGroup) {
        const int gs = f4 - o0 < kGroup ? f4 - o0 : kGroup;
        for (int part = 0; part < 2; part++) {
            const int kk = part == 0 ? s->kx : s->kh, channels = part == 0 ? s->cx : s->f;
            for (int ch = 0; ch < channels; ch++)
                for (int tap = 0; tap < kk * kk; tap++) {
                    const long row = (part == 0 ? 0 : xrows) + (long)tap * channels + ch;
                    for (int r = 0; r < gs; r++) packed[k++] = w[row * f4 + o0 + r];
                }
        }
    }
}

void cik_direct_step(const cik_planes *s, const float *packed, const float *bias, const float *x, const float *hprev,
                     float *c, float *h, int row0, int row1) {
    if (s->f > 64) __builtin_trap();   // the pre-activations of a row chunk live on the stack
    table().directStep(s, packed, bias, x, hprev, c, h, row0, row1);
}

int cik_wino_rows(const cik_wino *s) { return winoRows(s); }
int cik_wino_cols(const cik_wino *s) { return winoCols(s); }
long cik_wino_weights_size(const cik_wino *s) {
    const long n = s->tile + 2;
    return n * n * (s->cx + s->f) * 4 * s->f;
}

void cik_wino_pack(const cik_wino *s, const float *w, float *u) {
    if (s->tile == 4) winoPack<4>(s, w, u);
    else winoPack<2>(s, w, u);
}

long cik_wino_scratch_size(const cik_wino *s) {
    const long n = s->tile + 2, rows = kBand + kOverhang;
    return n * n * rows * (s->cx + s->f + 4 * s->f);
}

void cik_wino_step(const cik_wino *s, const float *u, const float *bias, const float *x, const float *hprev, float *c,
                   float *h, float *scratch) {
    table().winoStep(s, u, bias, x, hprev, c, h, scratch);
}

} // extern "C"

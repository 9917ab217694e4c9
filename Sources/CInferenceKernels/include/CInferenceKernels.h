/*
 * CInferenceKernels.h — SIMD kernels of the ConvLSTM engine (Sources/Inference).
 *
 * Why C++: Swift has no per-function target features, and the binary must run on any
 * x86-64. Each kernel here is written once over a vector width and compiled three times
 * (AVX-512F, AVX2+FMA, baseline SSE2); the first call picks the widest the CPU supports.
 *
 * All tensors are float32. Gates are in Keras order i, f, c, o along the last axis of 4f.
 */
#ifndef CINFERENCE_KERNELS_H
#define CINFERENCE_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The instruction set in use: 2 = AVX-512F, 1 = AVX2+FMA, 0 = baseline. */
int cik_level(void);
/* Caps the level at `level` (tests); a negative value restores the CPU's. Returns the
 * level now in effect. */
int cik_set_max_level(int level);

/* y += x over n floats (the two directions' outputs). */
void cik_add(float *y, const float *x, long n);

/* The LSTM cell on channels-last pre-activations: for each of `n` voxels, z (4f wide,
 * bias not yet added) → c ← σ(z_f + b_f)·c + σ(z_i + b_i)·tanh(z_c + b_c),
 * h ← σ(z_o + b_o)·tanh(c). c and h are n × f. */
void cik_gates(const float *z, const float *bias, float *c, float *h, long n, int f);

/* ---- direct convolution, channel planes ----------------------------------------------
 * For small filter counts (f ≤ 64). Every channel is a plane of (height + 2·pad) rows of
 * `stride` floats; voxel (y, x) sits at (y + pad)·stride + pad + x, everything else is zero.
 * stride ≥ 2·pad + width rounded up to 16. A step reads x_t (cx planes) and h_{t−1}
 * (f planes), updates c (f planes, same layout) and writes h_t (f planes, borders kept 0). */
typedef struct {
    int height, width, pad, stride;
    int cx, f;     /* input channels, filters */
    int kx, kh;    /* odd kernel sizes, radius ≤ pad */
} cik_planes;

/* Floats per plane. */
long cik_plane_size(const cik_planes *s);
/* Reorders Keras weights — [kx², cx] rows then [kh², f] rows (row index (dy·k + dx)·C + ch),
 * 4f columns — for cik_direct_step; `packed` holds as many floats as `w`. */
void cik_direct_pack(const cik_planes *s, const float *w, float *packed);
/* One time step over rows [row0, row1) of the output. */
void cik_direct_step(const cik_planes *s, const float *packed, const float *bias, const float *x,
                     const float *hprev, float *c, float *h, int row0, int row1);

/* ---- Winograd F(m×m, 3×3), channels-last ---------------------------------------------
 * For 3×3 input and recurrent kernels; output tiles of m = `tile` (2 or 4)
 * voxels a side. Maps are padded channels-last: rows m·⌈height/m⌉ + 2, columns
 * m·⌈width/m⌉ + 2, voxel (y, x) at row y + 1, column x + 1, zero outside. x has cx channels
 * per voxel; c and h have f. */
typedef struct {
    int height, width, cx, f, tile;
} cik_wino;

/* Padded rows and columns. */
int cik_wino_rows(const cik_wino *s);
int cik_wino_cols(const cik_wino *s);
/* Floats of transformed weights: (m + 2)² · (cx + f) · 4f. */
long cik_wino_weights_size(const cik_wino *s);
/* Keras weights (as for cik_direct_pack, 3×3) → the (m + 2)² transformed matrices. */
void cik_wino_pack(const cik_wino *s, const float *w, float *u);
/* Floats of scratch one cik_wino_step needs. */
long cik_wino_scratch_size(const cik_wino *s);
/* One time step: h (must not alias hprev) and c updated in place. */
void cik_wino_step(const cik_wino *s, const float *u, const float *bias, const float *x,
                   const float *hprev, float *c, float *h, float *scratch);

#ifdef __cplusplus
}
#endif

#endif

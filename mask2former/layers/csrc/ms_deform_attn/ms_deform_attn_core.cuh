// Multi-scale deformable attention: the per-(batch, query, head) work of one thread.
//
// Torch-free and __host__ __device__ on purpose: the CUDA kernels in ms_deform_attn_{forward,backward}.cu
// launch these functions with G threads ("lanes") per (n, q, m) item, and host_emulation.cpp runs the very
// same code on the CPU (G lanes in sequence) so that its indexing and math are tested without a GPU.
//
// Layouts (all contiguous):
//   value              (N, S, M, D)       S = sum_l H_l * W_l
//   spatial_shapes     (L, 2) int64       (H_l, W_l)
//   level_start_index  (L,)   int64
//   sampling_loc       (N, Lq, M, L, P, 2)  (x, y) in [0, 1]; outside contributes zero
//   attn_weight        (N, Lq, M, L, P)
//   output             (N, Lq, M, D)
// Bilinear sampling follows grid_sample(align_corners=False, padding_mode="zeros"):
//   pixel coordinate px = x * W - 0.5, py = y * H - 0.5; out-of-image corners read zero.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MSDA_HD __host__ __device__ __forceinline__
#define MSDA_UNROLL _Pragma("unroll")
#else
#define MSDA_HD inline
#define MSDA_UNROLL
#endif

namespace msda {

// VEC consecutive channels moved by one load/store instruction (16 bytes at most).
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Vec {
  T v[VEC];
};

struct Dims {
  int64_t batch;      // N
  int64_t num_value;  // S
  int64_t heads;      // M
  int64_t channels;   // D
  int64_t queries;    // Lq
  int64_t levels;     // L
  int64_t points;     // P
};

// The four bilinear taps of one sampling point; offset is the spatial index (start + y * W + x)
// of a tap, or -1 when the tap falls outside the level (zero padding).
template <typename acc_t>
struct Taps {
  int64_t index[4];  // order: (y0, x0), (y0, x1), (y1, x0), (y1, x1)
  acc_t weight[4];
  acc_t lx, ly;      // fractional parts, for the location gradient
  bool inside;       // false: no tap is in the image, the point contributes nothing
};

MSDA_HD float floor_acc(float x) { return floorf(x); }
MSDA_HD double floor_acc(double x) { return ::floor(x); }

template <typename acc_t>
MSDA_HD Taps<acc_t> bilinear_taps(acc_t x, acc_t y, int64_t H, int64_t W, int64_t start) {
  Taps<acc_t> t;
  const acc_t px = x * static_cast<acc_t>(W) - acc_t(0.5);
  const acc_t py = y * static_cast<acc_t>(H) - acc_t(0.5);
  // written so that NaN lands in the "outside" branch
  t.inside = px > acc_t(-1) && py > acc_t(-1) && px < static_cast<acc_t>(W) && py < static_cast<acc_t>(H);
  if (!t.inside) {
    return t;
  }
  const acc_t fx = floor_acc(px);
  const acc_t fy = floor_acc(py);
  const int64_t x0 = static_cast<int64_t>(fx);
  const int64_t y0 = static_cast<int64_t>(fy);
  t.lx = px - fx;
  t.ly = py - fy;
  const acc_t hx = acc_t(1) - t.lx;
  const acc_t hy = acc_t(1) - t.ly;
  t.weight[0] = hy * hx;
  t.weight[1] = hy * t.lx;
  t.weight[2] = t.ly * hx;
  t.weight[3] = t.ly * t.lx;
  const bool x0_ok = x0 >= 0;           // x0 < W always holds here
  const bool x1_ok = x0 + 1 < W;        // x0 + 1 >= 0 always holds here
  const bool y0_ok = y0 >= 0;
  const bool y1_ok = y0 + 1 < H;
  const int64_t row0 = start + y0 * W;
  const int64_t row1 = row0 + W;
  t.index[0] = (y0_ok && x0_ok) ? row0 + x0 : -1;
  t.index[1] = (y0_ok && x1_ok) ? row0 + x0 + 1 : -1;
  t.index[2] = (y1_ok && x0_ok) ? row1 + x0 : -1;
  t.index[3] = (y1_ok && x1_ok) ? row1 + x0 + 1 : -1;
  return t;
}

template <typename acc_t, typename scalar_t, int VEC>
MSDA_HD void load_vec(const scalar_t* ptr, acc_t (&out)[VEC]) {
  const Vec<scalar_t, VEC> v = *reinterpret_cast<const Vec<scalar_t, VEC>*>(ptr);
MSDA_UNROLL
  for (int k = 0; k < VEC; ++k) {
    out[k] = static_cast<acc_t>(v.v[k]);
  }
}

// Stores VEC values rounded to scalar_t. 2-byte types are packed into 32-bit words first: writing
// 2-byte elements of a register array one by one would send the array to local memory.
template <typename scalar_t, typename acc_t, int VEC>
MSDA_HD void store_vec(scalar_t* ptr, const acc_t (&in)[VEC]) {
  if constexpr (sizeof(scalar_t) == 2 && VEC % 2 == 0) {
    struct alignas(sizeof(scalar_t) * VEC) Words {
      uint32_t w[VEC / 2];
    } words;
MSDA_UNROLL
    for (int k = 0; k < VEC / 2; ++k) {
      const scalar_t lo = static_cast<scalar_t>(in[2 * k]);
      const scalar_t hi = static_cast<scalar_t>(in[2 * k + 1]);
      uint16_t lo_bits, hi_bits;
      memcpy(&lo_bits, &lo, 2);
      memcpy(&hi_bits, &hi, 2);
      words.w[k] = static_cast<uint32_t>(lo_bits) | (static_cast<uint32_t>(hi_bits) << 16);
    }
    *reinterpret_cast<Words*>(ptr) = words;
  } else {
    Vec<scalar_t, VEC> v;
MSDA_UNROLL
    for (int k = 0; k < VEC; ++k) v.v[k] = static_cast<scalar_t>(in[k]);
    *reinterpret_cast<Vec<scalar_t, VEC>*>(ptr) = v;
  }
}

// Channels c0 .. c0 + VEC - 1 of item (n, q, m): lane `lane` of `group` handles chunks
// c0 = (lane + i * group) * VEC. `shapes` / `starts` may live in shared memory.
template <typename scalar_t, typename acc_t, int VEC>
MSDA_HD void forward_item(const scalar_t* __restrict__ value, const int64_t* shapes, const int64_t* starts,
                          const scalar_t* __restrict__ sampling_loc, const scalar_t* __restrict__ attn_weight,
                          scalar_t* __restrict__ output, const Dims& d, int64_t n, int64_t q, int64_t m,
                          int lane, int group) {
  const int64_t item = (n * d.queries + q) * d.heads + m;
  const int64_t row_stride = d.heads * d.channels;  // between spatial positions
  const scalar_t* v_base = value + (n * d.num_value * d.heads + m) * d.channels;
  const scalar_t* loc = sampling_loc + item * d.levels * d.points * 2;
  const scalar_t* attn = attn_weight + item * d.levels * d.points;
  scalar_t* out = output + item * d.channels;

  for (int64_t c0 = static_cast<int64_t>(lane) * VEC; c0 < d.channels; c0 += static_cast<int64_t>(group) * VEC) {
    acc_t acc[VEC];
MSDA_UNROLL
    for (int k = 0; k < VEC; ++k) acc[k] = acc_t(0);

    for (int64_t l = 0; l < d.levels; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
      for (int64_t p = 0; p < d.points; ++p) {
        const int64_t lp = l * d.points + p;
        const Taps<acc_t> t = bilinear_taps<acc_t>(static_cast<acc_t>(loc[2 * lp]),
                                                   static_cast<acc_t>(loc[2 * lp + 1]), H, W, start);
        if (!t.inside) continue;
        const acc_t a = static_cast<acc_t>(attn[lp]);
MSDA_UNROLL
        for (int c = 0; c < 4; ++c) {
          if (t.index[c] < 0) continue;
          acc_t v[VEC];
          load_vec<acc_t, scalar_t, VEC>(v_base + t.index[c] * row_stride + c0, v);
          const acc_t w = a * t.weight[c];
MSDA_UNROLL
          for (int k = 0; k < VEC; ++k) acc[k] += w * v[k];
        }
      }
    }
    store_vec<scalar_t, acc_t, VEC>(out + c0, acc);
  }
}

// Backward of one item. `ops` supplies the cross-lane part:
//   ops.reduce(x)          sum of x over the item's lanes (returned to every lane)
//   ops.add(ptr, vals)     grad_value[ptr .. ptr + VEC) += vals (atomic on the GPU)
// Every lane must call this with the same d (uniform trip counts: ops.reduce is collective);
// `active` is false for padding lanes of a partial tile, which compute nothing and write nothing.
// grad_value is in grad_t (fp32 for half / bfloat16 / float, fp64 for double); lane 0 writes
// grad_loc and grad_attn (every element of them, so they may start uninitialised).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <typename scalar_t, typename acc_t, typename grad_t, int VEC, typename Ops>
MSDA_HD void backward_item(const scalar_t* __restrict__ value, const int64_t* shapes, const int64_t* starts,
                           const scalar_t* __restrict__ sampling_loc, const scalar_t* __restrict__ attn_weight,
                           const scalar_t* __restrict__ grad_output, grad_t* __restrict__ grad_value,
                           scalar_t* __restrict__ grad_loc, scalar_t* __restrict__ grad_attn, const Dims& d,
                           int64_t n, int64_t q, int64_t m, int lane, int group, bool active, Ops& ops) {
  const int64_t item = (n * d.queries + q) * d.heads + m;
  const int64_t row_stride = d.heads * d.channels;
  const int64_t v_offset = (n * d.num_value * d.heads + m) * d.channels;
  const scalar_t* v_base = value + v_offset;
  grad_t* gv_base = grad_value + v_offset;
  const scalar_t* loc = sampling_loc + item * d.levels * d.points * 2;
  const scalar_t* attn = attn_weight + item * d.levels * d.points;
  const scalar_t* g_out = grad_output + item * d.channels;
  const int64_t chunk = static_cast<int64_t>(group) * VEC;
  const int64_t num_chunks = (d.channels + chunk - 1) / chunk;  // the same for every lane
  const int64_t c_first = static_cast<int64_t>(lane) * VEC;

  // grad_output of the first chunk stays in registers (D <= group * VEC: the only chunk)
  acc_t go_first[VEC];
  if (active && c_first < d.channels) {
    load_vec<acc_t, scalar_t, VEC>(g_out + c_first, go_first);
  } else {
MSDA_UNROLL
    for (int k = 0; k < VEC; ++k) go_first[k] = acc_t(0);
  }

  for (int64_t l = 0; l < d.levels; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
    for (int64_t p = 0; p < d.points; ++p) {
      const int64_t lp = l * d.points + p;
      acc_t g_attn = 0, g_x = 0, g_y = 0;  // this lane's share of the channel sums
      acc_t a = 0;
      Taps<acc_t> t;
      t.inside = false;
      if (active) {
        a = static_cast<acc_t>(attn[lp]);
        t = bilinear_taps<acc_t>(static_cast<acc_t>(loc[2 * lp]), static_cast<acc_t>(loc[2 * lp + 1]), H, W,
                                 start);
      }
      if (t.inside) {
        const acc_t hx = acc_t(1) - t.lx, hy = acc_t(1) - t.ly;
        // d(weight[c]) / d(px) and / d(py)
        const acc_t dwx[4] = {-hy, hy, -t.ly, t.ly};
        const acc_t dwy[4] = {-hx, -t.lx, hx, t.lx};
        for (int64_t i = 0; i < num_chunks; ++i) {
          const int64_t c0 = c_first + i * chunk;
          if (c0 >= d.channels) break;
          acc_t go[VEC];
          if (i == 0) {
MSDA_UNROLL
            for (int k = 0; k < VEC; ++k) go[k] = go_first[k];
          } else {
            load_vec<acc_t, scalar_t, VEC>(g_out + c0, go);
          }
MSDA_UNROLL
          for (int c = 0; c < 4; ++c) {
            if (t.index[c] < 0) continue;
            acc_t v[VEC];
            load_vec<acc_t, scalar_t, VEC>(v_base + t.index[c] * row_stride + c0, v);
            acc_t dot = 0;
            grad_t contrib[VEC];
            const acc_t aw = a * t.weight[c];
MSDA_UNROLL
            for (int k = 0; k < VEC; ++k) {
              dot += go[k] * v[k];
              contrib[k] = static_cast<grad_t>(aw * go[k]);
            }
            ops.add(gv_base + t.index[c] * row_stride + c0, contrib);
            g_attn += t.weight[c] * dot;
            g_x += dwx[c] * dot;
            g_y += dwy[c] * dot;
          }
        }
      }
      g_attn = ops.reduce(g_attn);
      g_x = ops.reduce(g_x);
      g_y = ops.reduce(g_y);
      if (active && lane == 0) {
        const int64_t o = item * d.levels * d.points + lp;
        grad_attn[o] = static_cast<scalar_t>(g_attn);
        // px = x * W - 0.5  =>  d/dx = W * d/dpx
        grad_loc[2 * o] = static_cast<scalar_t>(a * static_cast<acc_t>(W) * g_x);
        grad_loc[2 * o + 1] = static_cast<scalar_t>(a * static_cast<acc_t>(H) * g_y);
      }
    }
  }
}

}  // namespace msda

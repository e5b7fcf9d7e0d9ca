// Launch configuration shared by the forward and backward kernels.
//
// One thread block covers (batch n, head m, a tile of queries): blockIdx = (query tile, m, n).
// Each (n, q, m) item is served by a group of G lanes (G a power of two <= 32, so a group never
// straddles a warp); a lane moves VEC consecutive channels (up to 16 bytes) per load, so a head's
// D channels (contiguous in value's (N, S, M, D) layout) are read by G coalesced vector loads.
#pragma once

// Light ATen / c10 headers only: ATen/cuda/CUDAContext.h would drag in cuBLAS / cuSPARSE headers.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "ms_deform_attn_core.cuh"

namespace msda {

constexpr int kThreadsPerBlock = 256;
// __launch_bounds__ minimum resident blocks per SM. With the block size alone ptxas caps these
// kernels at 48 registers and spills (half / bfloat16 VEC=8); 4 blocks allow 64 registers
// (forward needs <= 58), 3 blocks allow 85 (backward, double included).
constexpr int kForwardMinBlocks = 4;
constexpr int kBackwardMinBlocks = 3;
constexpr int kMaxLevels = 1024;  // level table lives in shared memory (3 * L int64)

// Largest VEC (16 bytes at most) dividing D with every pointer VEC-aligned.
template <typename scalar_t>
int pick_vec(int64_t channels, std::initializer_list<const void*> ptrs) {
  for (int vec = 16 / static_cast<int>(sizeof(scalar_t)); vec > 1; vec /= 2) {
    if (channels % vec != 0) continue;
    bool aligned = true;
    for (const void* p : ptrs) {
      aligned = aligned && reinterpret_cast<std::uintptr_t>(p) % (vec * sizeof(scalar_t)) == 0;
    }
    if (aligned) return vec;
  }
  return 1;
}

// Lanes per item: enough for one pass over D (power of two, at most a warp).
inline int pick_group(int64_t channels, int vec) {
  const int64_t vectors = (channels + vec - 1) / vec;
  int group = 1;
  while (group < vectors && group < 32) group *= 2;
  return group;
}

// Calls f(std::integral_constant<int, VEC>) for the runtime vec (only VEC * sizeof(scalar_t) <= 16).
template <typename scalar_t, typename F>
void dispatch_vec(int vec, F&& f) {
  if constexpr (sizeof(scalar_t) * 8 <= 16) {
    if (vec == 8) return f(std::integral_constant<int, 8>{});
  }
  if constexpr (sizeof(scalar_t) * 4 <= 16) {
    if (vec == 4) return f(std::integral_constant<int, 4>{});
  }
  if (vec == 2) return f(std::integral_constant<int, 2>{});
  return f(std::integral_constant<int, 1>{});
}

inline Dims make_dims(const at::Tensor& value, const at::Tensor& sampling_loc) {
  Dims d;
  d.batch = value.size(0);
  d.num_value = value.size(1);
  d.heads = value.size(2);
  d.channels = value.size(3);
  d.queries = sampling_loc.size(1);
  d.levels = sampling_loc.size(3);
  d.points = sampling_loc.size(4);
  return d;
}

inline dim3 make_grid(const Dims& d, int group) {
  const int64_t items_per_block = kThreadsPerBlock / group;
  const int64_t tiles = (d.queries + items_per_block - 1) / items_per_block;
  TORCH_CHECK(tiles <= INT32_MAX && d.heads <= 65535 && d.batch <= 65535,
              "ms_deform_attn: too many queries / heads / batch elements for one launch (got Lq=", d.queries,
              ", M=", d.heads, ", N=", d.batch, ")");
  TORCH_CHECK(d.levels <= kMaxLevels, "ms_deform_attn: at most ", kMaxLevels, " levels, got ", d.levels);
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(d.heads), static_cast<unsigned>(d.batch));
}

inline size_t level_table_bytes(const Dims& d) { return static_cast<size_t>(3 * d.levels) * sizeof(int64_t); }

// Copies (H, W) pairs then start indices into shared memory; all threads of the block call it.
__device__ __forceinline__ void load_level_table(const int64_t* __restrict__ shapes,
                                                 const int64_t* __restrict__ starts, int64_t levels,
                                                 int64_t* table) {
  for (int64_t i = threadIdx.x; i < 3 * levels; i += blockDim.x) {
    table[i] = i < 2 * levels ? shapes[i] : starts[i - 2 * levels];
  }
  __syncthreads();
}

}  // namespace msda

// Forward kernel: out[n, q, m, :] = sum_{l, p} attn[n, q, m, l, p] * bilinear(value[n, level l, m, :], loc).
#include "ms_deform_attn.h"
#include "ms_deform_attn_launch.cuh"

namespace msda {
namespace {

template <typename scalar_t, typename acc_t, int VEC>
__global__ void __launch_bounds__(kThreadsPerBlock, kForwardMinBlocks)
    forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ spatial_shapes,
                   const int64_t* __restrict__ level_start_index, const scalar_t* __restrict__ sampling_loc,
                   const scalar_t* __restrict__ attn_weight, scalar_t* __restrict__ output, Dims d, int group) {
  extern __shared__ int64_t level_table[];  // (H, W) * L, then start * L
  load_level_table(spatial_shapes, level_start_index, d.levels, level_table);
  const int items_per_block = blockDim.x / group;
  const int64_t q = static_cast<int64_t>(blockIdx.x) * items_per_block + threadIdx.x / group;
  if (q >= d.queries) return;  // no collective below
  forward_item<scalar_t, acc_t, VEC>(value, level_table, level_table + 2 * d.levels, sampling_loc, attn_weight,
                                     output, d, blockIdx.z, q, blockIdx.y, threadIdx.x % group, group);
}

}  // namespace

at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                        const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                        const at::Tensor& attn_weight) {
  const c10::cuda::CUDAGuard guard(value.device());
  const Dims d = make_dims(value, sampling_loc);
  auto output = at::empty({d.batch, d.queries, d.heads, d.channels}, value.options());
  if (output.numel() == 0) return output;
  if (d.levels == 0 || d.points == 0) return output.zero_();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int vec = pick_vec<scalar_t>(d.channels, {value.data_ptr(), output.data_ptr()});
    const int group = pick_group(d.channels, vec);
    const dim3 grid = make_grid(d, group);
    const auto stream = c10::cuda::getCurrentCUDAStream();
    dispatch_vec<scalar_t>(vec, [&](auto vec_tag) {
      constexpr int VEC = decltype(vec_tag)::value;
      forward_kernel<scalar_t, acc_t, VEC><<<grid, kThreadsPerBlock, level_table_bytes(d), stream>>>(
          value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
          sampling_loc.data_ptr<scalar_t>(), attn_weight.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), d,
          group);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return output;
}

}  // namespace msda

// Backward kernel. Per (n, q, m) item and sampling point, the item's G lanes
//  * scatter attn * w_tap * grad_out into grad_value with atomics (fp32 / fp64 buffer; on sm_90 one
//    float2 / float4 vector atomic per VEC channels instead of VEC scalar ones), and
//  * reduce grad_out . value_tap over the channels with warp shuffles for grad_attn and grad_loc.
// Why atomics: the op's reverse map (which queries sample a given pixel) is data dependent; sorting
// samples by pixel would cost more than the low-contention atomics it replaces (taps of one pixel
// rarely collide within a few microseconds, and red.global ops do not stall the issuing thread).
#include "ms_deform_attn.h"
#include "ms_deform_attn_launch.cuh"

namespace msda {
namespace {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr bool kVectorAtomics = true;  // red.global.add.v2/v4.f32
#else
constexpr bool kVectorAtomics = false;
#endif

template <int VEC>
__device__ __forceinline__ void atomic_add_vec(float* ptr, const float (&v)[VEC]) {
  if constexpr (kVectorAtomics && VEC % 4 == 0) {
#pragma unroll
    for (int i = 0; i < VEC / 4; ++i) {
      atomicAdd(reinterpret_cast<float4*>(ptr) + i, make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]));
    }
  } else if constexpr (kVectorAtomics && VEC % 2 == 0) {
#pragma unroll
    for (int i = 0; i < VEC / 2; ++i) {
      atomicAdd(reinterpret_cast<float2*>(ptr) + i, make_float2(v[2 * i], v[2 * i + 1]));
    }
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) atomicAdd(ptr + k, v[k]);
  }
}

template <int VEC>
__device__ __forceinline__ void atomic_add_vec(double* ptr, const double (&v)[VEC]) {
#pragma unroll
  for (int k = 0; k < VEC; ++k) atomicAdd(ptr + k, v[k]);
}

template <typename acc_t, typename grad_t, int VEC>
struct WarpGroupOps {
  int group;  // lanes per item, a power of two dividing 32
  __device__ __forceinline__ acc_t reduce(acc_t x) const {
    for (int offset = group >> 1; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
  }
  __device__ __forceinline__ void add(grad_t* ptr, const grad_t (&v)[VEC]) const { atomic_add_vec<VEC>(ptr, v); }
};

template <typename scalar_t, typename acc_t, typename grad_t, int VEC>
__global__ void __launch_bounds__(kThreadsPerBlock, kBackwardMinBlocks)
    backward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ spatial_shapes,
                    const int64_t* __restrict__ level_start_index, const scalar_t* __restrict__ sampling_loc,
                    const scalar_t* __restrict__ attn_weight, const scalar_t* __restrict__ grad_output,
                    grad_t* __restrict__ grad_value, scalar_t* __restrict__ grad_loc,
                    scalar_t* __restrict__ grad_attn, Dims d, int group) {
  extern __shared__ int64_t level_table[];
  load_level_table(spatial_shapes, level_start_index, d.levels, level_table);
  const int items_per_block = blockDim.x / group;
  const int64_t q = static_cast<int64_t>(blockIdx.x) * items_per_block + threadIdx.x / group;
  // no early exit: every lane of a warp takes part in the shuffles
  WarpGroupOps<acc_t, grad_t, VEC> ops{group};
  backward_item<scalar_t, acc_t, grad_t, VEC>(value, level_table, level_table + 2 * d.levels, sampling_loc,
                                              attn_weight, grad_output, grad_value, grad_loc, grad_attn, d,
                                              blockIdx.z, q, blockIdx.y, threadIdx.x % group, group,
                                              q < d.queries, ops);
}

}  // namespace

std::vector<at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                      const at::Tensor& attn_weight, const at::Tensor& grad_output) {
  const c10::cuda::CUDAGuard guard(value.device());
  const Dims d = make_dims(value, sampling_loc);
  const auto grad_dtype = value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(grad_dtype));
  auto grad_loc = at::zeros(sampling_loc.sizes(), sampling_loc.options());
  auto grad_attn = at::zeros(attn_weight.sizes(), attn_weight.options());
  const bool empty = d.batch * d.queries * d.heads == 0 || d.levels == 0 || d.points == 0;
  if (!empty && d.channels > 0) {
    grad_loc = at::empty_like(grad_loc);  // every element is written by the kernel
    grad_attn = at::empty_like(grad_attn);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      using grad_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
      const int vec = pick_vec<scalar_t>(d.channels, {value.data_ptr(), grad_output.data_ptr()});
      const int group = pick_group(d.channels, vec);
      const dim3 grid = make_grid(d, group);
      const auto stream = c10::cuda::getCurrentCUDAStream();
      dispatch_vec<scalar_t>(vec, [&](auto vec_tag) {
        constexpr int VEC = decltype(vec_tag)::value;
        backward_kernel<scalar_t, acc_t, grad_t, VEC><<<grid, kThreadsPerBlock, level_table_bytes(d), stream>>>(
            value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
            sampling_loc.data_ptr<scalar_t>(), attn_weight.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(),
            grad_value.data_ptr<grad_t>(), grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(), d, group);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  if (grad_value.scalar_type() != value.scalar_type()) grad_value = grad_value.to(value.scalar_type());
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace msda

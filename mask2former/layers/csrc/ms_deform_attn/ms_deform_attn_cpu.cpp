// Multi-scale deformable attention on the CPU: forward and backward kernels + pybind11 binding.
// JIT-compiled by ms_deform_attn_cpu.py (C++ only, no CUDA toolkit needed). The bilinear taps (indices,
// weights, zero padding) come from ms_deform_attn_core.cuh, the code the CUDA kernels run.
//
// Parallel with ATen's thread pool (at::parallel_for: torch.set_num_threads applies; the build must
// pass -fopenmp where torch threads with OpenMP, else at::parallel_for runs serially):
//   forward   over (n, q, m) items; each item writes its own D outputs;
//   backward  over (n, m) pairs; an item's grad_value taps stay inside its (n, m) slice, so no two
//             threads write the same element and no atomics are needed.
// One pass per item: the D channels of a tap are contiguous (value is (N, S, M, D)), the compiler
// vectorises the channel loops, and nothing of size (Lq, L, P, D) is ever materialised.
#include <torch/extension.h>

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <type_traits>
#include <vector>

#include "ms_deform_attn_checks.h"
#include "ms_deform_attn_core.cuh"

namespace {

msda::Dims dims_of(const at::Tensor& value, const at::Tensor& sampling_loc) {
  msda::Dims d;
  d.batch = value.size(0);
  d.num_value = value.size(1);
  d.heads = value.size(2);
  d.channels = value.size(3);
  d.queries = sampling_loc.size(1);
  d.levels = sampling_loc.size(3);
  d.points = sampling_loc.size(4);
  return d;
}

// run(std::integral_constant<int, kD>) with kD = channels for the specialised 16 / 32 / 64, else kD = 0.
template <typename Fn>
void dispatch_channels(int64_t channels, Fn&& run) {
  if (channels == 16) {
    run(std::integral_constant<int, 16>{});
  } else if (channels == 32) {
    run(std::integral_constant<int, 32>{});
  } else if (channels == 64) {
    run(std::integral_constant<int, 64>{});
  } else {
    run(std::integral_constant<int, 0>{});
  }
}

// out[0, D) = sum over levels, points, taps of attn * tap weight * value row. kD > 0: D is that
// compile-time constant (the common 16 / 32 / 64 channels per head: the channel loops unroll into vector
// registers, acc stays in them); kD == 0: D = d.channels, acc is D scratch values.
template <typename scalar_t, typename acc_t, int kD>
void forward_item(const scalar_t* __restrict__ value, const int64_t* shapes, const int64_t* starts,
                  const scalar_t* __restrict__ loc, const scalar_t* __restrict__ attn, scalar_t* __restrict__ out,
                  const msda::Dims& d, int64_t n, int64_t m, acc_t* __restrict__ scratch) {
  const int64_t D = kD > 0 ? kD : d.channels;
  acc_t fixed[kD > 0 ? kD : 1];
  acc_t* __restrict__ acc = kD > 0 ? fixed : scratch;
  const int64_t row_stride = d.heads * D;
  const scalar_t* v_base = value + (n * d.num_value * d.heads + m) * D;
  for (int64_t k = 0; k < D; ++k) acc[k] = acc_t(0);
  for (int64_t l = 0; l < d.levels; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
    for (int64_t p = 0; p < d.points; ++p) {
      const int64_t lp = l * d.points + p;
      const msda::Taps<acc_t> t = msda::bilinear_taps<acc_t>(static_cast<acc_t>(loc[2 * lp]),
                                                             static_cast<acc_t>(loc[2 * lp + 1]), H, W, start);
      if (!t.inside) continue;
      const acc_t a = static_cast<acc_t>(attn[lp]);
      for (int c = 0; c < 4; ++c) {
        if (t.index[c] < 0) continue;
        const scalar_t* __restrict__ v = v_base + t.index[c] * row_stride;
        const acc_t w = a * t.weight[c];
        for (int64_t k = 0; k < D; ++k) acc[k] += w * static_cast<acc_t>(v[k]);
      }
    }
  }
  for (int64_t k = 0; k < D; ++k) out[k] = static_cast<scalar_t>(acc[k]);
}

// Gradients of one (n, q, m) item: grad_value (acc_t, accumulated), grad_loc and grad_attn (written).
// kD as in forward_item; go holds the item's D output gradients (fixed-size when kD > 0).
template <typename scalar_t, typename acc_t, int kD>
void backward_item(const scalar_t* __restrict__ value, const int64_t* shapes, const int64_t* starts,
                   const scalar_t* __restrict__ loc, const scalar_t* __restrict__ attn,
                   const scalar_t* __restrict__ g_out, acc_t* __restrict__ grad_value, scalar_t* __restrict__ grad_loc,
                   scalar_t* __restrict__ grad_attn, const msda::Dims& d, int64_t n, int64_t m,
                   acc_t* __restrict__ scratch) {
  const int64_t D = kD > 0 ? kD : d.channels;
  acc_t fixed[kD > 0 ? kD : 1];
  acc_t* __restrict__ go = kD > 0 ? fixed : scratch;
  const int64_t row_stride = d.heads * D;
  const int64_t v_offset = (n * d.num_value * d.heads + m) * D;
  const scalar_t* v_base = value + v_offset;
  acc_t* gv_base = grad_value + v_offset;
  for (int64_t k = 0; k < D; ++k) go[k] = static_cast<acc_t>(g_out[k]);
  for (int64_t l = 0; l < d.levels; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
    for (int64_t p = 0; p < d.points; ++p) {
      const int64_t lp = l * d.points + p;
      const msda::Taps<acc_t> t = msda::bilinear_taps<acc_t>(static_cast<acc_t>(loc[2 * lp]),
                                                             static_cast<acc_t>(loc[2 * lp + 1]), H, W, start);
      const acc_t a = static_cast<acc_t>(attn[lp]);
      acc_t g_attn = 0, g_x = 0, g_y = 0;
      if (t.inside) {
        const acc_t hx = acc_t(1) - t.lx, hy = acc_t(1) - t.ly;
        const acc_t dwx[4] = {-hy, hy, -t.ly, t.ly};  // d(weight[c]) / d(px)
        const acc_t dwy[4] = {-hx, -t.lx, hx, t.lx};  // d(weight[c]) / d(py)
        for (int c = 0; c < 4; ++c) {
          if (t.index[c] < 0) continue;
          const scalar_t* __restrict__ v = v_base + t.index[c] * row_stride;
          acc_t* __restrict__ gv = gv_base + t.index[c] * row_stride;
          const acc_t aw = a * t.weight[c];
          acc_t dot = 0;
          // vectorised only with leave to reorder the sum (this pragma, active under -fopenmp);
          // otherwise dot is a chain of D dependent scalar FMAs
#pragma omp simd reduction(+ : dot)
          for (int64_t k = 0; k < D; ++k) {
            dot += go[k] * static_cast<acc_t>(v[k]);
            gv[k] += aw * go[k];
          }
          g_attn += t.weight[c] * dot;
          g_x += dwx[c] * dot;
          g_y += dwy[c] * dot;
        }
      }
      grad_attn[lp] = static_cast<scalar_t>(g_attn);
      // px = x * W - 0.5  =>  d/dx = W * d/dpx
      grad_loc[2 * lp] = static_cast<scalar_t>(a * static_cast<acc_t>(W) * g_x);
      grad_loc[2 * lp + 1] = static_cast<scalar_t>(a * static_cast<acc_t>(H) * g_y);
    }
  }
}

at::Tensor forward(const at::Tensor& value_in, const at::Tensor& spatial_shapes_in,
                   const at::Tensor& level_start_index_in, const at::Tensor& sampling_loc_in,
                   const at::Tensor& attn_weight_in) {
  msda::check_inputs(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in, attn_weight_in,
                     at::kCPU);
  const at::Tensor value = value_in.contiguous(), shapes = spatial_shapes_in.contiguous();
  const at::Tensor starts = level_start_index_in.contiguous(), loc = sampling_loc_in.contiguous();
  const at::Tensor attn = attn_weight_in.contiguous();
  const msda::Dims d = dims_of(value, loc);
  at::Tensor output = at::empty({d.batch, d.queries, d.heads, d.channels}, value.options());
  const int64_t items = d.batch * d.queries * d.heads;
  const int64_t lp = d.levels * d.points;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cpu_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* v = value.const_data_ptr<scalar_t>();
    const scalar_t* l = loc.const_data_ptr<scalar_t>();
    const scalar_t* a = attn.const_data_ptr<scalar_t>();
    scalar_t* o = output.mutable_data_ptr<scalar_t>();
    const int64_t* sh = shapes.const_data_ptr<int64_t>();
    const int64_t* st = starts.const_data_ptr<int64_t>();
    auto run = [&](auto channels) {
      constexpr int kD = decltype(channels)::value;
      at::parallel_for(0, items, 64, [&](int64_t begin, int64_t end) {
        std::vector<acc_t> scratch(kD > 0 ? 0 : d.channels);
        for (int64_t item = begin; item < end; ++item) {
          const int64_t m = item % d.heads;
          const int64_t n = item / (d.heads * d.queries);
          forward_item<scalar_t, acc_t, kD>(v, sh, st, l + item * lp * 2, a + item * lp, o + item * d.channels, d,
                                            n, m, scratch.data());
        }
      });
    };
    dispatch_channels(d.channels, run);
  });
  return output;
}

std::vector<at::Tensor> backward(const at::Tensor& value_in, const at::Tensor& spatial_shapes_in,
                                 const at::Tensor& level_start_index_in, const at::Tensor& sampling_loc_in,
                                 const at::Tensor& attn_weight_in, const at::Tensor& grad_output_in) {
  msda::check_inputs(value_in, spatial_shapes_in, level_start_index_in, sampling_loc_in, attn_weight_in,
                     at::kCPU);
  msda::check_grad_output(value_in, sampling_loc_in, grad_output_in);
  const at::Tensor value = value_in.contiguous(), shapes = spatial_shapes_in.contiguous();
  const at::Tensor starts = level_start_index_in.contiguous(), loc = sampling_loc_in.contiguous();
  const at::Tensor attn = attn_weight_in.contiguous(), grad_output = grad_output_in.contiguous();
  const msda::Dims d = dims_of(value, loc);
  const at::ScalarType acc_type = at::toOpMathType(value.scalar_type());
  at::Tensor grad_value = at::zeros(value.sizes(), value.options().dtype(acc_type));
  at::Tensor grad_loc = at::empty_like(loc);
  at::Tensor grad_attn = at::empty_like(attn);
  const int64_t lp = d.levels * d.points;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cpu_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* v = value.const_data_ptr<scalar_t>();
    const scalar_t* l = loc.const_data_ptr<scalar_t>();
    const scalar_t* a = attn.const_data_ptr<scalar_t>();
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    acc_t* gv = grad_value.mutable_data_ptr<acc_t>();
    scalar_t* gl = grad_loc.mutable_data_ptr<scalar_t>();
    scalar_t* ga = grad_attn.mutable_data_ptr<scalar_t>();
    const int64_t* sh = shapes.const_data_ptr<int64_t>();
    const int64_t* st = starts.const_data_ptr<int64_t>();
    auto run = [&](auto channels) {
      constexpr int kD = decltype(channels)::value;
      at::parallel_for(0, d.batch * d.heads, 1, [&](int64_t begin, int64_t end) {
        std::vector<acc_t> scratch(kD > 0 ? 0 : d.channels);
        for (int64_t pair = begin; pair < end; ++pair) {
          const int64_t n = pair / d.heads, m = pair % d.heads;
          for (int64_t q = 0; q < d.queries; ++q) {
            const int64_t item = (n * d.queries + q) * d.heads + m;
            backward_item<scalar_t, acc_t, kD>(v, sh, st, l + item * lp * 2, a + item * lp, go + item * d.channels,
                                               gv, gl + item * lp * 2, ga + item * lp, d, n, m, scratch.data());
          }
        }
      });
    };
    dispatch_channels(d.channels, run);
  });
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

// How many threads ran parts of an at::parallel_for over `items` items (1 when the build lacks
// OpenMP although torch threads with it; a check for the build, not for the kernels).
int64_t threads_used(int64_t items) {
  std::vector<char> seen(at::get_num_threads(), 0);
  at::parallel_for(0, items, 1, [&](int64_t, int64_t) { seen[at::get_thread_num()] = 1; });
  int64_t count = 0;
  for (char s : seen) count += s;
  return count;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mask2former multi-scale deformable attention (CPU)";
  m.def("forward", &forward, "-> output (N, Lq, M, D)", py::arg("value"), py::arg("spatial_shapes"),
        py::arg("level_start_index"), py::arg("sampling_loc"), py::arg("attn_weight"));
  m.def("backward", &backward, "-> [grad_value, grad_sampling_loc, grad_attn_weight]", py::arg("value"),
        py::arg("spatial_shapes"), py::arg("level_start_index"), py::arg("sampling_loc"), py::arg("attn_weight"),
        py::arg("grad_output"));
  m.def("threads_used", &threads_used, "threads that ran parts of an at::parallel_for", py::arg("items"));
}

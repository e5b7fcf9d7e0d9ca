// Input checks shared by the CUDA and CPU bindings of multi-scale deformable attention.
#pragma once

#include <torch/extension.h>

namespace msda {

inline void check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                         const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                         const at::Tensor& attn_weight, at::DeviceType device_type) {
  TORCH_CHECK(value.device().type() == device_type, "ms_deform_attn: value must be a ", c10::DeviceTypeName(device_type),
              " tensor, got one on ", value.device());
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be (N, S, M, D), got ", value.sizes());
  TORCH_CHECK(sampling_loc.dim() == 6 && sampling_loc.size(5) == 2,
              "ms_deform_attn: sampling_loc must be (N, Lq, M, L, P, 2), got ", sampling_loc.sizes());
  TORCH_CHECK(attn_weight.dim() == 5, "ms_deform_attn: attn_weight must be (N, Lq, M, L, P), got ",
              attn_weight.sizes());
  const auto N = value.size(0), M = value.size(2);
  const auto L = sampling_loc.size(3), P = sampling_loc.size(4), Lq = sampling_loc.size(1);
  TORCH_CHECK(sampling_loc.size(0) == N && sampling_loc.size(2) == M,
              "ms_deform_attn: sampling_loc ", sampling_loc.sizes(), " does not match value ", value.sizes());
  TORCH_CHECK(attn_weight.sizes() == at::IntArrayRef({N, Lq, M, L, P}), "ms_deform_attn: attn_weight ",
              attn_weight.sizes(), " does not match sampling_loc ", sampling_loc.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(0) == L && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be (L, 2) with L=", L, ", got ", spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == L,
              "ms_deform_attn: level_start_index must be (L,) with L=", L, ", got ", level_start_index.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64");
  TORCH_CHECK(sampling_loc.scalar_type() == value.scalar_type() && attn_weight.scalar_type() == value.scalar_type(),
              "ms_deform_attn: value, sampling_loc and attn_weight must share a dtype, got ", value.scalar_type(),
              ", ", sampling_loc.scalar_type(), ", ", attn_weight.scalar_type());
  for (const at::Tensor* t : {&spatial_shapes, &level_start_index, &sampling_loc, &attn_weight}) {
    TORCH_CHECK(t->device() == value.device(), "ms_deform_attn: all inputs must be on ", value.device(),
                ", got one on ", t->device());
  }
}

inline void check_grad_output(const at::Tensor& value, const at::Tensor& sampling_loc, const at::Tensor& grad_output) {
  const auto N = value.size(0), M = value.size(2), D = value.size(3), Lq = sampling_loc.size(1);
  TORCH_CHECK(grad_output.numel() == N * Lq * M * D && grad_output.size(0) == N && grad_output.size(1) == Lq,
              "ms_deform_attn: grad_output must hold (N, Lq, M * D) = (", N, ", ", Lq, ", ", M * D, "), got ",
              grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type() && grad_output.device() == value.device(),
              "ms_deform_attn: grad_output must match value's dtype and device");
}

}  // namespace msda

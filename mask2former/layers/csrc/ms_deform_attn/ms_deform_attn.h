// Host entry points of the multi-scale deformable attention CUDA op (see ms_deform_attn_core.cuh).
// Inputs must already be validated and contiguous (ms_deform_attn.cpp does both).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace msda {

// -> output (N, Lq, M, D), dtype of value
at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                        const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                        const at::Tensor& attn_weight);

// -> {grad_value (N, S, M, D), grad_sampling_loc (N, Lq, M, L, P, 2), grad_attn_weight (N, Lq, M, L, P)}
std::vector<at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                      const at::Tensor& attn_weight, const at::Tensor& grad_output);

}  // namespace msda

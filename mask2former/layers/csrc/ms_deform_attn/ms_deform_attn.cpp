// Python binding of the multi-scale deformable attention CUDA op: input checks + pybind11.
// Built by setup.py (module mask2former.layers._msda_C) or JIT-compiled by ms_deform_attn_cuda.py.
#include <torch/extension.h>

#include "ms_deform_attn.h"
#include "ms_deform_attn_checks.h"

namespace {

at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                   const at::Tensor& sampling_loc, const at::Tensor& attn_weight) {
  msda::check_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight, at::kCUDA);
  return msda::forward_cuda(value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
                            sampling_loc.contiguous(), attn_weight.contiguous());
}

std::vector<at::Tensor> backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                 const at::Tensor& attn_weight, const at::Tensor& grad_output) {
  msda::check_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight, at::kCUDA);
  msda::check_grad_output(value, sampling_loc, grad_output);
  return msda::backward_cuda(value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
                             sampling_loc.contiguous(), attn_weight.contiguous(), grad_output.contiguous());
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mask2former multi-scale deformable attention (CUDA)";
  m.def("forward", &forward, "-> output (N, Lq, M, D)", py::arg("value"), py::arg("spatial_shapes"),
        py::arg("level_start_index"), py::arg("sampling_loc"), py::arg("attn_weight"));
  m.def("backward", &backward, "-> [grad_value, grad_sampling_loc, grad_attn_weight]", py::arg("value"),
        py::arg("spatial_shapes"), py::arg("level_start_index"), py::arg("sampling_loc"), py::arg("attn_weight"),
        py::arg("grad_output"));
}

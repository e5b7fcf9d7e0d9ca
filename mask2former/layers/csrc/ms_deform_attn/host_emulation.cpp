// Test harness, not part of the extension: runs the CUDA kernels' per-item code (ms_deform_attn_core.cuh)
// on the CPU, so tests on machines without a GPU check its indexing and math against the PyTorch path.
// Forward emulates any lane-group size (lanes run one after another); backward uses one lane per item
// (its cross-lane reduction is the identity then), with VEC-wide loads and several channel chunks.
// A 2-byte bfloat16 stand-in exercises the packed half / bfloat16 load and store paths.
// Build: c++ -O1 -std=c++17 -shared -fPIC host_emulation.cpp -o libmsda_emu.so ; call through ctypes.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ms_deform_attn_core.cuh"

namespace {

// bfloat16 with round-to-nearest-even, bit-compatible with torch.bfloat16 (NaN handling omitted).
struct BF16 {
  uint16_t x;
  BF16() = default;
  BF16(float f) {  // NOLINT: implicit, like c10::BFloat16
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    x = static_cast<uint16_t>(bits >> 16);
  }
  operator float() const {  // NOLINT
    const uint32_t bits = static_cast<uint32_t>(x) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

template <typename grad_t, int VEC>
struct SerialOps {
  template <typename acc_t>
  acc_t reduce(acc_t x) const { return x; }
  void add(grad_t* ptr, const grad_t (&v)[VEC]) const {
    for (int k = 0; k < VEC; ++k) ptr[k] += v[k];
  }
};

msda::Dims to_dims(const int64_t* dims) {  // N, S, M, D, Lq, L, P
  msda::Dims d;
  d.batch = dims[0];
  d.num_value = dims[1];
  d.heads = dims[2];
  d.channels = dims[3];
  d.queries = dims[4];
  d.levels = dims[5];
  d.points = dims[6];
  return d;
}

// acc_t: float for float / BF16, double for double (as at::opmath_type); grad_t likewise.
template <typename T>
using acc_of = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T, int VEC>
void forward_all(const T* value, const int64_t* shapes, const int64_t* starts, const T* loc, const T* attn, T* out,
                 const msda::Dims& d, int group) {
  for (int64_t n = 0; n < d.batch; ++n)
    for (int64_t q = 0; q < d.queries; ++q)
      for (int64_t m = 0; m < d.heads; ++m)
        for (int lane = 0; lane < group; ++lane)
          msda::forward_item<T, acc_of<T>, VEC>(value, shapes, starts, loc, attn, out, d, n, q, m, lane, group);
}

template <typename T, int VEC>
void backward_all(const T* value, const int64_t* shapes, const int64_t* starts, const T* loc, const T* attn,
                  const T* grad_out, acc_of<T>* grad_value, T* grad_loc, T* grad_attn, const msda::Dims& d) {
  SerialOps<acc_of<T>, VEC> ops;
  for (int64_t n = 0; n < d.batch; ++n)
    for (int64_t q = 0; q < d.queries; ++q)
      for (int64_t m = 0; m < d.heads; ++m)
        msda::backward_item<T, acc_of<T>, acc_of<T>, VEC>(value, shapes, starts, loc, attn, grad_out, grad_value,
                                                          grad_loc, grad_attn, d, n, q, m, /*lane=*/0,
                                                          /*group=*/1, /*active=*/true, ops);
}

// VEC up to 16 bytes, as on the GPU
template <typename T>
int forward_dispatch(const T* value, const int64_t* shapes, const int64_t* starts, const T* loc, const T* attn,
                     T* out, const int64_t* dims, int vec, int group) {
  const msda::Dims d = to_dims(dims);
  if (vec < 1 || d.channels % vec != 0 || group < 1 || vec * sizeof(T) > 16) return -1;
  switch (vec) {
    case 1: forward_all<T, 1>(value, shapes, starts, loc, attn, out, d, group); return 0;
    case 2: forward_all<T, 2>(value, shapes, starts, loc, attn, out, d, group); return 0;
    case 4: forward_all<T, 4>(value, shapes, starts, loc, attn, out, d, group); return 0;
    case 8: forward_all<T, 8>(value, shapes, starts, loc, attn, out, d, group); return 0;
    default: return -1;
  }
}

template <typename T>
int backward_dispatch(const T* value, const int64_t* shapes, const int64_t* starts, const T* loc, const T* attn,
                      const T* grad_out, acc_of<T>* grad_value, T* grad_loc, T* grad_attn, const int64_t* dims,
                      int vec) {
  const msda::Dims d = to_dims(dims);
  if (vec < 1 || d.channels % vec != 0 || vec * sizeof(T) > 16) return -1;
  switch (vec) {
    case 1: backward_all<T, 1>(value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, d); return 0;
    case 2: backward_all<T, 2>(value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, d); return 0;
    case 4: backward_all<T, 4>(value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, d); return 0;
    case 8: backward_all<T, 8>(value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, d); return 0;
    default: return -1;
  }
}

}  // namespace

extern "C" {

int msda_emulate_forward_f32(const float* value, const int64_t* shapes, const int64_t* starts, const float* loc,
                             const float* attn, float* out, const int64_t* dims, int vec, int group) {
  return forward_dispatch<float>(value, shapes, starts, loc, attn, out, dims, vec, group);
}

int msda_emulate_forward_f64(const double* value, const int64_t* shapes, const int64_t* starts, const double* loc,
                             const double* attn, double* out, const int64_t* dims, int vec, int group) {
  return forward_dispatch<double>(value, shapes, starts, loc, attn, out, dims, vec, group);
}

// grad_value must be zero-initialised; grad_loc / grad_attn are fully written.
int msda_emulate_backward_f32(const float* value, const int64_t* shapes, const int64_t* starts, const float* loc,
                              const float* attn, const float* grad_out, float* grad_value, float* grad_loc,
                              float* grad_attn, const int64_t* dims, int vec) {
  return backward_dispatch<float>(value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, dims,
                                  vec);
}

int msda_emulate_backward_f64(const double* value, const int64_t* shapes, const int64_t* starts, const double* loc,
                              const double* attn, const double* grad_out, double* grad_value, double* grad_loc,
                              double* grad_attn, const int64_t* dims, int vec) {
  return backward_dispatch<double>(value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, dims,
                                   vec);
}

// bfloat16 buffers as uint16_t; grad_value is float32 (zero-initialised), as in the CUDA backward.
int msda_emulate_forward_bf16(const uint16_t* value, const int64_t* shapes, const int64_t* starts,
                              const uint16_t* loc, const uint16_t* attn, uint16_t* out, const int64_t* dims, int vec,
                              int group) {
  static_assert(sizeof(BF16) == 2, "BF16 must be 2 bytes");
  return forward_dispatch<BF16>(reinterpret_cast<const BF16*>(value), shapes, starts,
                                reinterpret_cast<const BF16*>(loc), reinterpret_cast<const BF16*>(attn),
                                reinterpret_cast<BF16*>(out), dims, vec, group);
}

int msda_emulate_backward_bf16(const uint16_t* value, const int64_t* shapes, const int64_t* starts,
                               const uint16_t* loc, const uint16_t* attn, const uint16_t* grad_out, float* grad_value,
                               uint16_t* grad_loc, uint16_t* grad_attn, const int64_t* dims, int vec) {
  return backward_dispatch<BF16>(reinterpret_cast<const BF16*>(value), shapes, starts,
                                 reinterpret_cast<const BF16*>(loc), reinterpret_cast<const BF16*>(attn),
                                 reinterpret_cast<const BF16*>(grad_out), grad_value, reinterpret_cast<BF16*>(grad_loc),
                                 reinterpret_cast<BF16*>(grad_attn), dims, vec);
}

}  // extern "C"

// CUDA kernels of RoI warping. Forward: one thread per output element. Backward: a 2-D grid of
// (RoI, part of that RoI's outputs); the feature gradient is scattered with atomics like torchvision's
// roi_align, the box gradient is reduced in registers and shared memory, then one atomic per block and
// coordinate adds it to a K x 4 buffer in the accumulation type.
#include "roi_warp.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/native/cuda/KernelUtils.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

namespace cascades {
namespace {

constexpr int kThreads = 256;

// index_t: int32 where every index fits (64-bit division is several times slower on the GPU).
template <typename T, typename A, typename index_t>
__global__ void forward_kernel(index_t total, const T* __restrict__ input, const T* __restrict__ rois,
                               int64_t batch_size, index_t channels, index_t height, index_t width, index_t pooled_h,
                               index_t pooled_w, index_t pool, A scale, bool aligned, A offset,
                               T* __restrict__ output, uint8_t* __restrict__ argmax) {
  const index_t warp_h = pooled_h * pool, warp_w = pooled_w * pool;
  for (index_t index = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t pw = index % pooled_w;
    const index_t ph = (index / pooled_w) % pooled_h;
    const index_t c = (index / (pooled_w * pooled_h)) % channels;
    const index_t k = index / (pooled_w * pooled_h * channels);
    if (!roi_is_valid(rois + 5 * k, batch_size)) {
      output[index] = static_cast<T>(NAN);
      if (pool > 1) argmax[index] = 0;
      continue;
    }
    const RoIGeometry<A> g = make_geometry<A>(rois + 5 * k, scale, aligned, warp_h, warp_w);
    const T* in = input + (g.batch * channels + c) * static_cast<int64_t>(height) * width;
    A best = A(0);
    int best_at = -1;
    for (index_t a = 0; a < pool; ++a) {
      const A y = g.start_y + (A(ph * pool + a) + offset) * g.bin_h;
      for (index_t b = 0; b < pool; ++b) {
        const A x = g.start_x + (A(pw * pool + b) + offset) * g.bin_w;
        const A v = interpolate<A>(make_sample(y, x, height, width), in);
        // The first maximum wins; a NaN propagates like in max_pool2d.
        if (best_at < 0 || v > best || isnan(v)) {
          best = v;
          best_at = static_cast<int>(a * pool + b);
        }
      }
    }
    output[index] = static_cast<T>(best);
    if (pool > 1) argmax[index] = static_cast<uint8_t>(best_at);
  }
}

template <typename A>
__device__ inline A warp_sum(A v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T, typename A, typename index_t>
__global__ void backward_kernel(const T* __restrict__ grad_output, const T* __restrict__ input,
                                const T* __restrict__ rois, const uint8_t* __restrict__ argmax,
                                int64_t batch_size, index_t channels, index_t height, index_t width, index_t pooled_h,
                                index_t pooled_w, index_t pool, A scale, bool aligned, A offset,
                                T* __restrict__ grad_input, index_t input_numel, A* __restrict__ box_acc) {
  const index_t k = blockIdx.x;
  if (!roi_is_valid(rois + 5 * k, batch_size)) return;  // the whole block: no gradient from a bad roi
  const index_t warp_h = pooled_h * pool, warp_w = pooled_w * pool;
  const index_t out_plane = pooled_h * pooled_w, per_roi = channels * out_plane;
  const RoIGeometry<A> g = make_geometry<A>(rois + 5 * k, scale, aligned, warp_h, warp_w);
  A acc[4] = {A(0), A(0), A(0), A(0)};
  for (index_t e = static_cast<index_t>(blockIdx.y) * blockDim.x + threadIdx.x; e < per_roi;
       e += static_cast<index_t>(blockDim.x) * gridDim.y) {
    const index_t out_index = k * per_roi + e;
    const A grad = static_cast<A>(grad_output[out_index]);
    if (grad == A(0)) continue;
    const index_t c = e / out_plane, s = e % out_plane;
    index_t i = s / pooled_w, j = s % pooled_w;
    if (pool > 1) {
      const index_t at = argmax[out_index];
      if (at >= pool * pool) continue;  // not a window position (a caller's own argmax): no gradient
      i = i * pool + at / pool;
      j = j * pool + at % pool;
    }
    const A fy = (A(i) + offset) / A(warp_h), fx = (A(j) + offset) / A(warp_w);
    const BilinearSample<A> smp =
        make_sample(g.start_y + (A(i) + offset) * g.bin_h, g.start_x + (A(j) + offset) * g.bin_w, height, width);
    if (!smp.inside) continue;
    const index_t base = (static_cast<index_t>(g.batch) * channels + c) * height * width;
    at::native::fastAtomicAdd(grad_input, base + smp.o1, input_numel, static_cast<T>(grad * smp.hy * smp.hx), true);
    at::native::fastAtomicAdd(grad_input, base + smp.o2, input_numel, static_cast<T>(grad * smp.hy * smp.lx), true);
    at::native::fastAtomicAdd(grad_input, base + smp.o3, input_numel, static_cast<T>(grad * smp.ly * smp.hx), true);
    at::native::fastAtomicAdd(grad_input, base + smp.o4, input_numel, static_cast<T>(grad * smp.ly * smp.lx), true);
    A dv_dy, dv_dx;
    sample_derivatives<A>(smp, input + base, &dv_dy, &dv_dx);
    accumulate_box_grad<A, A>(g, scale, fy, fx, grad, dv_dy, dv_dx, acc);
  }
  // Block reduction of the four box-gradient sums: warps, then the first warp.
  __shared__ A partial[4][kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int q = 0; q < 4; ++q) {
    const A v = warp_sum(acc[q]);
    if (lane == 0) partial[q][warp] = v;
  }
  __syncthreads();
  if (warp == 0) {
    for (int q = 0; q < 4; ++q) {
      const A v = warp_sum(lane < kThreads / 32 ? partial[q][lane] : A(0));
      if (lane == 0) atomicAdd(box_acc + 4 * k + q, v);
    }
  }
}

bool fits_int32(const at::Tensor& t) {
  return t.numel() < std::numeric_limits<int32_t>::max();
}

void check_cuda_args(const at::Tensor& input, const at::Tensor& rois) {
  TORCH_CHECK_VALUE(input.is_cuda() && rois.is_cuda(), "roi_warp: input and rois must both be CUDA tensors");
  TORCH_CHECK_TYPE(at::isFloatingType(input.scalar_type()),
                   "roi_warp on CUDA takes float16, bfloat16, float32 or float64 input, got ", input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> roi_warp_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                                         double spatial_scale, int64_t pooled_height,
                                                         int64_t pooled_width, int64_t pool_size,
                                                         bool aligned, double sample_offset) {
  check_roi_warp_args(input, rois, spatial_scale, pooled_height, pooled_width, pool_size, sample_offset);
  check_cuda_args(input, rois);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor in = input.contiguous(), r = rois.contiguous();
  const int64_t num_rois = r.size(0), channels = in.size(1);
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width}, in.options());
  at::Tensor argmax = pool_size > 1 ? at::empty(output.sizes(), in.options().dtype(at::kByte))
                                    : at::empty({0}, in.options().dtype(at::kByte));
  const int64_t total = output.numel();
  if (total == 0) return {output, argmax};
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "roi_warp_forward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto launch = [&](auto index_zero) {
      using index_t = decltype(index_zero);
      forward_kernel<scalar_t, A, index_t><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          total, in.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), in.size(0), channels, in.size(2), in.size(3), pooled_height,
          pooled_width, pool_size, A(spatial_scale), aligned, A(sample_offset), output.data_ptr<scalar_t>(),
          pool_size > 1 ? argmax.data_ptr<uint8_t>() : nullptr);
    };
    if (fits_int32(in) && fits_int32(output)) {
      launch(int32_t(0));
    } else {
      launch(int64_t(0));
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {output, argmax};
}

std::tuple<at::Tensor, at::Tensor> roi_warp_backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                                          const at::Tensor& rois, const at::Tensor& argmax,
                                                          double spatial_scale, int64_t pooled_height,
                                                          int64_t pooled_width, int64_t pool_size, bool aligned,
                                                          double sample_offset) {
  check_roi_warp_args(input, rois, spatial_scale, pooled_height, pooled_width, pool_size, sample_offset);
  check_cuda_args(input, rois);
  check_roi_warp_backward_args(grad_output, input, rois, argmax, pooled_height, pooled_width, pool_size);
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor in = input.contiguous(), r = rois.contiguous();
  const at::Tensor grad_out = grad_output.to(in.scalar_type()).contiguous();
  const at::Tensor arg = argmax.contiguous();
  at::Tensor grad_input = at::zeros_like(in);
  at::Tensor grad_rois = at::zeros_like(r);
  const int64_t per_roi = channels * pooled_height * pooled_width;
  if (num_rois == 0 || per_roi == 0) return {grad_input, grad_rois};
  const at::ScalarType acc_type = in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor box_acc = at::zeros({num_rois, 4}, in.options().dtype(acc_type));
  // Enough blocks to fill the device a few times over; each block reduces its box gradient once.
  int multiprocessors = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, input.get_device()));
  const int64_t target_blocks = 4LL * multiprocessors * (2048 / kThreads);
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>({(per_roi + kThreads - 1) / kThreads, (target_blocks + num_rois - 1) / num_rois, 65535}));
  const dim3 grid(static_cast<unsigned>(num_rois), static_cast<unsigned>(parts));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "roi_warp_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto launch = [&](auto index_zero) {
      using index_t = decltype(index_zero);
      backward_kernel<scalar_t, A, index_t><<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          grad_out.data_ptr<scalar_t>(), in.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
          pool_size > 1 ? arg.data_ptr<uint8_t>() : nullptr, in.size(0), channels, in.size(2), in.size(3), pooled_height,
          pooled_width, pool_size, A(spatial_scale), aligned, A(sample_offset), grad_input.data_ptr<scalar_t>(),
          grad_input.numel(), box_acc.data_ptr<A>());
    };
    if (fits_int32(in) && fits_int32(grad_out)) {
      launch(int32_t(0));
    } else {
      launch(int64_t(0));
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  grad_rois.narrow(1, 1, 4).copy_(box_acc);
  return {grad_input, grad_rois};
}

}  // namespace

TORCH_LIBRARY_IMPL(cascades, CUDA, m) {
  m.impl("roi_warp_forward", &roi_warp_forward_cuda);
  m.impl("roi_warp_backward", &roi_warp_backward_cuda);
}

}  // namespace cascades

// CPU kernels of RoI warping. The samples of all RoIs are computed once; forward then runs in parallel
// over channels and backward over channel blocks, so that a channel's plane stays in cache while every
// RoI reads it, and no two threads write the same feature-gradient element. Each backward block keeps its
// own K x 4 box-gradient sums (no buffer of the output's size).
#include "roi_warp.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace cascades {
namespace {

// The samples of every warp cell of every RoI, (K, warp_h, warp_w) row-major, and each RoI's geometry.
// Computed once per call: the kernels below then loop over tiles of RoIs and, inside a tile, over
// channels, so that a channel's plane stays in cache while the tile's RoIs sample it.
template <typename T>
void compute_samples(const T* rois, int64_t num_rois, T scale, bool aligned, T offset, int64_t warp_h,
                     int64_t warp_w, int64_t height, int64_t width, std::vector<RoIGeometry<T>>& geometry,
                     std::vector<BilinearSample<T>>& samples) {
  geometry.resize(num_rois);
  samples.resize(num_rois * warp_h * warp_w);
  at::parallel_for(0, num_rois, 16, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const RoIGeometry<T> g = make_geometry<T>(rois + 5 * k, scale, aligned, warp_h, warp_w);
      geometry[k] = g;
      BilinearSample<T>* out = samples.data() + k * warp_h * warp_w;
      for (int64_t i = 0; i < warp_h; ++i) {
        const T y = g.start_y + (T(i) + offset) * g.bin_h;
        for (int64_t j = 0; j < warp_w; ++j) {
          out[i * warp_w + j] = make_sample(y, g.start_x + (T(j) + offset) * g.bin_w, height, width);
        }
      }
    }
  });
}

// RoIs are visited in tiles whose samples fit in a core's L2 cache together with a feature plane.
template <typename T>
int64_t rois_per_tile(int64_t cells) {
  constexpr int64_t kTileBytes = 128 * 1024;
  return std::max<int64_t>(1, kTileBytes / (cells * static_cast<int64_t>(sizeof(BilinearSample<T>))));
}

template <typename T>
void forward_kernel(const T* input, const T* rois, int64_t channels, int64_t height, int64_t width,
                    int64_t num_rois, int64_t pooled_h, int64_t pooled_w, int64_t pool, T scale, bool aligned,
                    T offset, T* output, uint8_t* argmax) {
  const int64_t warp_h = pooled_h * pool, warp_w = pooled_w * pool;
  const int64_t plane = height * width, out_plane = pooled_h * pooled_w, cells = warp_h * warp_w;
  std::vector<RoIGeometry<T>> geometry;
  std::vector<BilinearSample<T>> samples;
  compute_samples(rois, num_rois, scale, aligned, offset, warp_h, warp_w, height, width, geometry, samples);
  const int64_t tile = rois_per_tile<T>(cells);
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t tile_begin = 0; tile_begin < num_rois; tile_begin += tile)
    for (int64_t c = begin; c < end; ++c) {
      for (int64_t k = tile_begin; k < std::min(num_rois, tile_begin + tile); ++k) {
        const T* in = input + (geometry[k].batch * channels + c) * plane;
        const BilinearSample<T>* smp = samples.data() + k * cells;
        T* out = output + (k * channels + c) * out_plane;
        if (pool == 1) {
          for (int64_t s = 0; s < out_plane; ++s) out[s] = interpolate<T>(smp[s], in);
          continue;
        }
        uint8_t* arg = argmax + (k * channels + c) * out_plane;
        for (int64_t ph = 0; ph < pooled_h; ++ph) {
          for (int64_t pw = 0; pw < pooled_w; ++pw) {
            T best = T(0);
            int64_t best_at = -1;
            for (int64_t a = 0; a < pool; ++a) {
              for (int64_t b = 0; b < pool; ++b) {
                const T v = interpolate<T>(smp[(ph * pool + a) * warp_w + pw * pool + b], in);
                // The first maximum wins; a NaN propagates like in max_pool2d.
                if (best_at < 0 || v > best || std::isnan(v)) {
                  best = v;
                  best_at = a * pool + b;
                }
              }
            }
            out[ph * pooled_w + pw] = best;
            arg[ph * pooled_w + pw] = static_cast<uint8_t>(best_at);
          }
        }
      }
    }
  });
}

// Parallel over channel blocks: a block writes only its channels of grad_input, and adds its part of
// the box gradient to its own slice of box_acc (num_blocks x K x 4), summed by the caller.
template <typename T>
void backward_kernel(const T* grad_output, const T* input, const T* rois, const uint8_t* argmax,
                     int64_t channels, int64_t height, int64_t width, int64_t num_rois, int64_t pooled_h,
                     int64_t pooled_w, int64_t pool, T scale, bool aligned, T offset, T* grad_input,
                     double* box_acc, int64_t num_blocks) {
  const int64_t warp_h = pooled_h * pool, warp_w = pooled_w * pool;
  const int64_t plane = height * width, out_plane = pooled_h * pooled_w, cells = warp_h * warp_w;
  const int64_t per_block = (channels + num_blocks - 1) / num_blocks;
  std::vector<RoIGeometry<T>> geometry;
  std::vector<BilinearSample<T>> samples;
  compute_samples(rois, num_rois, scale, aligned, offset, warp_h, warp_w, height, width, geometry, samples);
  std::vector<T> fy(warp_h), fx(warp_w);
  for (int64_t i = 0; i < warp_h; ++i) fy[i] = (T(i) + offset) / T(warp_h);
  for (int64_t j = 0; j < warp_w; ++j) fx[j] = (T(j) + offset) / T(warp_w);
  const int64_t tile = rois_per_tile<T>(cells);
  at::parallel_for(0, num_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block)
    for (int64_t tile_begin = 0; tile_begin < num_rois; tile_begin += tile) {
      const int64_t c_end = std::min(channels, (block + 1) * per_block);
      for (int64_t c = block * per_block; c < c_end; ++c) {
        for (int64_t k = tile_begin; k < std::min(num_rois, tile_begin + tile); ++k) {
          const RoIGeometry<T>& g = geometry[k];
          const BilinearSample<T>* smp_k = samples.data() + k * cells;
          double* acc = box_acc + (block * num_rois + k) * 4;
          const int64_t in_offset = (g.batch * channels + c) * plane;
          const T* in = input + in_offset;
          T* grad_in = grad_input + in_offset;
          const T* grad_out = grad_output + (k * channels + c) * out_plane;
          const uint8_t* arg = pool == 1 ? nullptr : argmax + (k * channels + c) * out_plane;
          for (int64_t s = 0; s < out_plane; ++s) {
            const T grad = grad_out[s];
            if (grad == T(0)) continue;
            int64_t i = s / pooled_w, j = s % pooled_w;
            if (pool > 1) {
              i = i * pool + arg[s] / pool;
              j = j * pool + arg[s] % pool;
            }
            const BilinearSample<T>& smp = smp_k[i * warp_w + j];
            if (!smp.inside) continue;
            grad_in[smp.o1] += grad * smp.hy * smp.hx;
            grad_in[smp.o2] += grad * smp.hy * smp.lx;
            grad_in[smp.o3] += grad * smp.ly * smp.hx;
            grad_in[smp.o4] += grad * smp.ly * smp.lx;
            T dv_dy, dv_dx;
            sample_derivatives<T>(smp, in, &dv_dy, &dv_dx);
            accumulate_box_grad<T, double>(g, scale, fy[i], fx[j], grad, dv_dy, dv_dx, acc);
          }
        }
      }
    }
  });
}

// Finite coordinates, integral batch index in [0, batch_size): checked on the host before any read (the
// CUDA kernels skip bad rois instead, see roi_is_valid, since raising there would need a host sync).
void check_roi_values(const at::Tensor& rois, int64_t batch_size) {
  const at::Tensor r = rois.to(at::kDouble).contiguous();
  const double* p = r.data_ptr<double>();
  for (int64_t k = 0; k < r.size(0); ++k) {
    const double* roi = p + 5 * k;
    TORCH_CHECK_VALUE(std::isfinite(roi[1]) && std::isfinite(roi[2]) && std::isfinite(roi[3]) &&
                          std::isfinite(roi[4]),
                      "roi_warp: rois[", k, "] has a non-finite box (", roi[1], ", ", roi[2], ", ", roi[3], ", ",
                      roi[4], ")");
    TORCH_CHECK_VALUE(roi[0] >= 0 && roi[0] < batch_size && roi[0] == std::floor(roi[0]),
                      "roi_warp: rois[", k, ", 0] = ", roi[0], " is not a batch index in [0, ", batch_size,
                      ")");
  }
}

// Each argmax value is a position in a pool_size x pool_size window; the kernel indexes the samples
// with it, so a larger one (in a caller's own tensor) would read out of bounds.
void check_argmax_values(const at::Tensor& argmax, int64_t pool_size) {
  if (argmax.numel() == 0) return;
  const int64_t largest = argmax.max().item<uint8_t>();
  TORCH_CHECK_VALUE(largest < pool_size * pool_size, "roi_warp backward: argmax must hold positions in the ",
                    pool_size, " x ", pool_size, " pooling window (0 to ", pool_size * pool_size - 1,
                    "), as the forward returns them; it holds ", largest);
}

std::tuple<at::Tensor, at::Tensor> roi_warp_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                                        double spatial_scale, int64_t pooled_height,
                                                        int64_t pooled_width, int64_t pool_size,
                                                        bool aligned, double sample_offset) {
  check_roi_warp_args(input, rois, spatial_scale, pooled_height, pooled_width, pool_size, sample_offset);
  TORCH_CHECK_TYPE(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
                   "roi_warp on the CPU takes float32 or float64 input, got ", input.scalar_type());
  check_roi_values(rois, input.size(0));
  const at::Tensor in = input.contiguous(), r = rois.contiguous();
  const int64_t num_rois = r.size(0), channels = in.size(1);
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width}, in.options());
  at::Tensor argmax = pool_size > 1 ? at::empty(output.sizes(), in.options().dtype(at::kByte))
                                    : at::empty({0}, in.options().dtype(at::kByte));
  if (output.numel() == 0) return {output, argmax};
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "roi_warp_forward_cpu", [&] {
    forward_kernel<scalar_t>(in.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), channels, in.size(2), in.size(3),
                             num_rois, pooled_height, pooled_width, pool_size, scalar_t(spatial_scale), aligned,
                             scalar_t(sample_offset), output.data_ptr<scalar_t>(),
                             pool_size > 1 ? argmax.data_ptr<uint8_t>() : nullptr);
  });
  return {output, argmax};
}

std::tuple<at::Tensor, at::Tensor> roi_warp_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                                         const at::Tensor& rois, const at::Tensor& argmax,
                                                         double spatial_scale, int64_t pooled_height,
                                                         int64_t pooled_width, int64_t pool_size, bool aligned,
                                                         double sample_offset) {
  check_roi_warp_args(input, rois, spatial_scale, pooled_height, pooled_width, pool_size, sample_offset);
  check_roi_warp_backward_args(grad_output, input, rois, argmax, pooled_height, pooled_width, pool_size);
  check_roi_values(rois, input.size(0));
  const at::Tensor arg = argmax.contiguous();
  if (pool_size > 1) check_argmax_values(arg, pool_size);
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const at::Tensor in = input.contiguous(), r = rois.contiguous();
  const at::Tensor grad_out = grad_output.to(in.scalar_type()).contiguous();
  at::Tensor grad_input = at::zeros_like(in);
  at::Tensor grad_rois = at::zeros_like(r);
  if (grad_out.numel() == 0) return {grad_input, grad_rois};
  const int64_t num_blocks = std::min<int64_t>(channels, at::get_num_threads());
  at::Tensor box_acc = at::zeros({num_blocks, num_rois, 4}, in.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "roi_warp_backward_cpu", [&] {
    backward_kernel<scalar_t>(grad_out.data_ptr<scalar_t>(), in.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                              pool_size > 1 ? arg.data_ptr<uint8_t>() : nullptr, channels, in.size(2),
                              in.size(3), num_rois, pooled_height, pooled_width, pool_size,
                              scalar_t(spatial_scale), aligned, scalar_t(sample_offset),
                              grad_input.data_ptr<scalar_t>(), box_acc.data_ptr<double>(), num_blocks);
  });
  grad_rois.narrow(1, 1, 4).copy_(box_acc.sum(0));
  return {grad_input, grad_rois};
}

}  // namespace

TORCH_LIBRARY_IMPL(cascades, CPU, m) {
  m.impl("roi_warp_forward", &roi_warp_forward_cpu);
  m.impl("roi_warp_backward", &roi_warp_backward_cpu);
}

}  // namespace cascades

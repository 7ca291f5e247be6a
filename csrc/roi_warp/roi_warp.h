// RoI warping (MNC, Dai et al. 2016, Eqs. 6-9): one bilinear sample per cell of a grid spanning the box,
// optionally followed by k x k max pooling, with exact gradients w.r.t. the features AND the box.
//
// The sampling math lives here as host/device inline functions so that the CPU and CUDA kernels compute
// bit-for-bit the same positions, weights and one-sided derivatives.
//
// Sample position of warp cell (i, j) of an RoI (x1, y1, x2, y2) on a map of stride 1/scale:
//   x = x1 * scale - a + (j + o) * width / warp_w,   width = (x2 - x1) * scale  (aligned: a = 0.5)
//   width = max((x2 - x1) * scale, 1)                                        (not aligned: a = 0)
// with o = 0.5 (cell centre, torchvision's roi_align with sampling_ratio = 1) or o = 0 (bin start, the
// released MNC code). Out-of-map rule (torchvision's): a sample with y < -1 or y > H (or x < -1 or
// x > W) reads 0; otherwise the coordinate is clamped into [0, H - 1], i.e. it reads the border value.
//
// One-sided derivatives (the function is piecewise linear in the box):
//   - at an integer coordinate the derivative is the right-hand one (the cell [y, y + 1] is used);
//   - a clamped coordinate (y < 0 or y >= H - 1) and an out-of-map sample have derivative 0, which is
//     also the right-hand derivative at y = -1, y = H - 1 and y = H;
//   - not aligned: at width <= 1 the max(., 1) clamp is active and the width has derivative 0.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace cascades {

// The four neighbours and weights of one bilinear sample, plus what the box derivative needs.
template <typename T>
struct BilinearSample {
  int32_t o1, o2, o3, o4;  // offsets in the H x W plane: (y0,x0), (y0,x1), (y1,x0), (y1,x1)
  T hy, ly, hx, lx;        // weights: w1 = hy*hx, w2 = hy*lx, w3 = ly*hx, w4 = ly*lx
  bool inside;             // false: the sample lies out of the map and reads 0
  bool y_free, x_free;     // false: the coordinate was clamped to the border (derivative 0)
};

template <typename T>
C10_HOST_DEVICE inline BilinearSample<T> make_sample(T y, T x, int64_t height, int64_t width) {
  BilinearSample<T> s;
  s.inside = !(y < T(-1) || y > T(height) || x < T(-1) || x > T(width));
  if (!s.inside) {
    s.o1 = s.o2 = s.o3 = s.o4 = 0;
    s.hy = s.ly = s.hx = s.lx = T(0);
    s.y_free = s.x_free = false;
    return s;
  }
  s.y_free = y >= T(0);
  s.x_free = x >= T(0);
  if (y < T(0)) y = T(0);
  if (x < T(0)) x = T(0);
  int64_t y0 = static_cast<int64_t>(y);
  int64_t x0 = static_cast<int64_t>(x);
  int64_t y1, x1;
  if (y0 >= height - 1) {
    y0 = y1 = height - 1;
    y = T(y0);
    s.y_free = false;
  } else {
    y1 = y0 + 1;
  }
  if (x0 >= width - 1) {
    x0 = x1 = width - 1;
    x = T(x0);
    s.x_free = false;
  } else {
    x1 = x0 + 1;
  }
  s.ly = y - T(y0);
  s.lx = x - T(x0);
  s.hy = T(1) - s.ly;
  s.hx = T(1) - s.lx;
  s.o1 = static_cast<int32_t>(y0 * width + x0);
  s.o2 = static_cast<int32_t>(y0 * width + x1);
  s.o3 = static_cast<int32_t>(y1 * width + x0);
  s.o4 = static_cast<int32_t>(y1 * width + x1);
  return s;
}

template <typename T, typename V>
C10_HOST_DEVICE inline T interpolate(const BilinearSample<T>& s, const V* plane) {
  if (!s.inside) return T(0);
  return s.hy * (s.hx * T(plane[s.o1]) + s.lx * T(plane[s.o2])) +
         s.ly * (s.hx * T(plane[s.o3]) + s.lx * T(plane[s.o4]));
}

// Where the cells of one RoI sample the map, and how the sample coordinates move with the box.
template <typename T>
struct RoIGeometry {
  int64_t batch;
  T start_x, start_y;  // sample position of cell (0, 0) minus o * bin
  T bin_w, bin_h;      // width / warp_w, height / warp_h
  T dwidth, dheight;   // d width / d x2 (= -d width / d x1): scale, or 0 where max(., 1) is active
};

template <typename T, typename V>
C10_HOST_DEVICE inline RoIGeometry<T> make_geometry(const V* roi, T scale, bool aligned, int64_t warp_h,
                                                    int64_t warp_w) {
  RoIGeometry<T> g;
  g.batch = static_cast<int64_t>(roi[0]);
  const T offset = aligned ? T(0.5) : T(0);
  g.start_x = T(roi[1]) * scale - offset;
  g.start_y = T(roi[2]) * scale - offset;
  T w = T(roi[3]) * scale - offset - g.start_x;
  T h = T(roi[4]) * scale - offset - g.start_y;
  g.dwidth = scale;
  g.dheight = scale;
  if (!aligned) {
    if (!(w > T(1))) {
      w = T(1);
      g.dwidth = T(0);
    }
    if (!(h > T(1))) {
      h = T(1);
      g.dheight = T(0);
    }
  }
  g.bin_w = w / T(warp_w);
  g.bin_h = h / T(warp_h);
  return g;
}

// Whether a roi can be sampled: finite box, integral batch index in [0, batch_size). The CUDA kernels
// use it so that a direct call of the op with bad rois never reads out of bounds (they write NaN instead
// of synchronizing with the host to raise; the Python API raises a ValueError first).
template <typename V>
C10_HOST_DEVICE inline bool roi_is_valid(const V* roi, int64_t batch_size) {
  const double b = static_cast<double>(roi[0]);
  for (int q = 1; q < 5; ++q) {
    const double v = static_cast<double>(roi[q]);
    if (!(v - v == 0.0)) return false;  // NaN or infinite
  }
  return b >= 0 && b < static_cast<double>(batch_size) && b == static_cast<double>(static_cast<int64_t>(b));
}

// d(sample value)/dy and d/dx of one sample, from the four neighbours' values.
template <typename T, typename V>
C10_HOST_DEVICE inline void sample_derivatives(const BilinearSample<T>& s, const V* plane, T* dv_dy,
                                               T* dv_dx) {
  *dv_dy = T(0);
  *dv_dx = T(0);
  if (!s.inside) return;
  const T v1 = T(plane[s.o1]), v2 = T(plane[s.o2]), v3 = T(plane[s.o3]), v4 = T(plane[s.o4]);
  if (s.y_free) *dv_dy = s.hx * (v3 - v1) + s.lx * (v4 - v2);
  if (s.x_free) *dv_dx = s.hy * (v2 - v1) + s.ly * (v4 - v3);
}

// Adds one sample's contribution g * dv/d(box) to acc = (d/dx1, d/dy1, d/dx2, d/dy2).
// With f = (j + o) / warp_w:  dx/dx1 = scale - f * dwidth,  dx/dx2 = f * dwidth.
template <typename T, typename A>
C10_HOST_DEVICE inline void accumulate_box_grad(const RoIGeometry<T>& g, T scale, T fy, T fx, T grad,
                                                T dv_dy, T dv_dx, A* acc) {
  const T gx = grad * dv_dx;
  const T gy = grad * dv_dy;
  acc[0] += A(gx * (scale - fx * g.dwidth));
  acc[1] += A(gy * (scale - fy * g.dheight));
  acc[2] += A(gx * fx * g.dwidth);
  acc[3] += A(gy * fy * g.dheight);
}

// Checks shared by the CPU and CUDA entry points (the Python wrapper checks first, with the names of
// its own arguments; these guard direct calls of the op).
inline void check_roi_warp_args(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                int64_t pooled_height, int64_t pooled_width, int64_t pool_size,
                                double sample_offset) {
  TORCH_CHECK_VALUE(input.dim() == 4, "roi_warp: input must be N x C x H x W, got shape ", input.sizes());
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5,
                    "roi_warp: rois must be K x 5 (batch index, x1, y1, x2, y2), got shape ", rois.sizes());
  TORCH_CHECK_TYPE(rois.scalar_type() == input.scalar_type(), "roi_warp: rois dtype ", rois.scalar_type(),
                   " must equal input dtype ", input.scalar_type());
  TORCH_CHECK_VALUE(rois.device() == input.device(), "roi_warp: rois on ", rois.device(),
                    " must be on the input's device ", input.device());
  TORCH_CHECK_VALUE(std::isfinite(spatial_scale) && spatial_scale > 0,
                    "roi_warp: spatial_scale must be a finite number > 0, got ", spatial_scale);
  TORCH_CHECK_VALUE(pooled_height >= 1 && pooled_width >= 1,
                    "roi_warp: output size must be >= 1, got ", pooled_height, " x ", pooled_width);
  TORCH_CHECK_VALUE(pool_size >= 1 && pool_size <= 16, "roi_warp: pool_size must be in [1, 16], got ",
                    pool_size);
  TORCH_CHECK_VALUE(sample_offset == 0.0 || sample_offset == 0.5,
                    "roi_warp: sample_offset must be 0.5 (cell centre) or 0 (bin start), got ", sample_offset);
  TORCH_CHECK_VALUE(input.size(2) * input.size(3) < (int64_t(1) << 31),
                    "roi_warp: an H x W plane must hold fewer than 2^31 elements, got shape ", input.sizes());
  TORCH_CHECK_VALUE((input.size(2) >= 1 && input.size(3) >= 1) || rois.size(0) == 0,
                    "roi_warp: input must have a non-empty H x W map, got shape ", input.sizes());
}

// The backward's own arguments: grad_output of the output's shape, argmax (when pool_size > 1) a uint8
// tensor of the same shape on the same device. Its values are checked by each kernel: the CPU raises,
// the CUDA kernel skips an out-of-window position (no gradient) instead of synchronizing to raise.
inline void check_roi_warp_backward_args(const at::Tensor& grad_output, const at::Tensor& input,
                                         const at::Tensor& rois, const at::Tensor& argmax,
                                         int64_t pooled_height, int64_t pooled_width, int64_t pool_size) {
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef({rois.size(0), input.size(1), pooled_height, pooled_width}),
                    "roi_warp backward: grad_output must be K x C x pooled_height x pooled_width = ",
                    at::IntArrayRef({rois.size(0), input.size(1), pooled_height, pooled_width}), ", got ",
                    grad_output.sizes());
  TORCH_CHECK_VALUE(grad_output.device() == input.device(), "roi_warp backward: grad_output on ",
                    grad_output.device(), " must be on the input's device ", input.device());
  if (pool_size == 1) return;
  TORCH_CHECK_VALUE(argmax.sizes() == grad_output.sizes(),
                    "roi_warp backward: argmax must have the output's shape ", grad_output.sizes(), ", got ",
                    argmax.sizes());
  TORCH_CHECK_TYPE(argmax.scalar_type() == at::kByte, "roi_warp backward: argmax must be uint8 (as the "
                   "forward returns it), got ", argmax.scalar_type());
  TORCH_CHECK_VALUE(argmax.device() == input.device(), "roi_warp backward: argmax on ", argmax.device(),
                    " must be on the input's device ", input.device());
}

}  // namespace cascades

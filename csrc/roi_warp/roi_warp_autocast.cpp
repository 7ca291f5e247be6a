// Autocast kernels of RoI warping, one per autocast dispatch key, as torchvision's roi_align has them:
// under torch.autocast the op runs in float32 (the CPU kernels take float32/float64 only, and a box in
// float16/bfloat16 is off by up to several pixels), and its output is cast back to the input's dtype.
// Unlike torchvision, a float64 input stays float64: autocast upcasts here, never downcasts.
// The casts happen above the Autograd key, so gradients flow back through them to the callers' tensors.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <tuple>

namespace cascades {
namespace {

template <c10::DispatchKey autocast_key, c10::DeviceType device_type>
std::tuple<at::Tensor, at::Tensor> roi_warp_forward_autocast(const at::Tensor& input, const at::Tensor& rois,
                                                             double spatial_scale, int64_t pooled_height,
                                                             int64_t pooled_width, int64_t pool_size,
                                                             bool aligned, double sample_offset) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("cascades::roi_warp_forward", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double,
                                                                       int64_t, int64_t, int64_t, bool, double)>();
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key);
  // At least float32; float64 when either argument is float64, so that the two dtypes agree.
  const at::ScalarType compute_type =
      at::promote_types(at::kFloat, at::promote_types(input.scalar_type(), rois.scalar_type()));
  auto [output, argmax] = op.call(at::autocast::cached_cast(compute_type, input, device_type),
                                  at::autocast::cached_cast(compute_type, rois, device_type), spatial_scale,
                                  pooled_height, pooled_width, pool_size, aligned, sample_offset);
  return {output.to(input.scalar_type()), argmax};
}

}  // namespace

TORCH_LIBRARY_IMPL(cascades, AutocastCPU, m) {
  m.impl("roi_warp_forward",
         TORCH_FN((roi_warp_forward_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>)));
}

TORCH_LIBRARY_IMPL(cascades, AutocastCUDA, m) {
  m.impl("roi_warp_forward",
         TORCH_FN((roi_warp_forward_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>)));
}

}  // namespace cascades

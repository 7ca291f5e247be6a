#include "roi_warp.h"

#include <ATen/ATen.h>

#include <cmath>

namespace cascades {

void check_roi_warp_args(const at::Tensor& input, const at::Tensor& rois, int64_t pooled_height,
                         int64_t pooled_width, int64_t pool_size, double sample_offset) {
  TORCH_CHECK_VALUE(input.dim() == 4, "roi_warp: input must be N x C x H x W, got shape ", input.sizes());
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5,
                    "roi_warp: rois must be K x 5 (batch index, x1, y1, x2, y2), got shape ", rois.sizes());
  TORCH_CHECK_TYPE(rois.scalar_type() == input.scalar_type(), "roi_warp: rois dtype ", rois.scalar_type(),
                   " must equal input dtype ", input.scalar_type());
  TORCH_CHECK_VALUE(rois.device() == input.device(), "roi_warp: rois on ", rois.device(),
                    " must be on the input's device ", input.device());
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

void check_roi_values(const at::Tensor& rois_cpu, int64_t batch_size) {
  // Float64 on the host: exact for any batch index a float16/bfloat16 tensor can hold.
  const at::Tensor r = rois_cpu.to(at::kDouble).contiguous();
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

}  // namespace cascades

// Schemas of the ops in the `cascades` namespace. Kernels register per dispatch key next to their code
// (roi_warp/roi_warp_cpu.cpp, roi_warp/roi_warp_cuda.cu); autograd and fake (meta) kernels register
// from Python (projects/cascades/layers/roi_warp.py).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import cascades._C` loads this library, which runs the registrations below; the module is empty.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(cascades, m) {
  // Returns (output K x C x pooled_height x pooled_width, argmax): the warp grid is
  // (pooled_height * pool_size) x (pooled_width * pool_size); argmax (uint8, same shape as output) holds
  // the position of the maximum inside each pool_size x pool_size window, or is empty when pool_size == 1.
  m.def(
      "roi_warp_forward(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int pool_size, bool aligned, float sample_offset) -> (Tensor, Tensor)");
  // Returns (grad_input N x C x H x W, grad_rois K x 5 with column 0, the batch index, equal to 0).
  m.def(
      "roi_warp_backward(Tensor grad_output, Tensor input, Tensor rois, Tensor argmax, "
      "float spatial_scale, int pooled_height, int pooled_width, int pool_size, bool aligned, "
      "float sample_offset) -> (Tensor, Tensor)");
}

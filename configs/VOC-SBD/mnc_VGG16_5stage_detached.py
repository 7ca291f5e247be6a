# Ablation of end-to-end training: the 5-stage cascade with the box coordinates detached (no
# gradient through the RoI warp into the RPN's or stage 3's boxes; the masking layer still passes
# gradients into stage 2). The paper's closest rows are Table 1 (a)/(b) (60.2/60.5, stepwise).
from .mnc_VGG16_5stage_e2e import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.end_to_end = False
train.output_dir = "./output/voc_sbd_mnc_VGG16_5stage_detached"

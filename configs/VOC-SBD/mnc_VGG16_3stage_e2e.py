# Table 1 (c): 3-stage cascade trained end to end, tested with the 5-stage structure (stages 4/5 reuse
# stages 2/3). Paper: 62.6 mAP^r@0.5 (VGG-16).
from .mnc_VGG16_5stage_e2e import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.num_stages = 3
model.roi_heads.test_num_stages = 5
train.output_dir = "./output/voc_sbd_mnc_VGG16_3stage_e2e"

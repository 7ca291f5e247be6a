# MNC Table 1 (a), three separate networks: step 2 of 3 trains the mask network
# (configs/common/models/mnc_vgg16_separate.py). Paper, after step 3: 60.2 mAP^r@0.5 (VGG-16).
from ..common.models.mnc_vgg16_separate import model, table1_step
from .mnc_VGG16_5stage_e2e import dataloader, lr_multiplier, optimizer, train

model = table1_step(model, train, "a", 2)

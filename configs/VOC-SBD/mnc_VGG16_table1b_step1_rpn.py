# MNC Table 1 (b), stepwise training with shared convolutional layers: step 1 of 3 trains the rpn network
# (configs/common/models/mnc_vgg16_separate.py). Paper, after step 3: 60.5 mAP^r@0.5 (VGG-16).
from ..common.models.mnc_vgg16_separate import model, table1_step
from .mnc_VGG16_5stage_e2e import dataloader, lr_multiplier, optimizer, train

model = table1_step(model, train, "b", 1)

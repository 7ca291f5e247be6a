# HTC R-50-FPN on the SCNet paper's schedule (20 epochs, lr x0.1 after epochs 16 and 19), which is also the
# HTC paper's: the SCNet paper's Table 1 HTC row.
from .htc_R_50_FPN_1x import dataloader, model, optimizer
from .scnet_R_50_FPN_20e import lr_multiplier, train

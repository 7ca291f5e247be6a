"""Meta-architectures and ROI heads of the cascades; importing registers them with detectron2."""
from .config import add_cascades_config
from .feature_relay import FeatureRelayHead
from .global_context_head import GlobalContextHead
from .htc import HTCROIHeads
from .htc_mask_head import HTCMaskHead
from . import mnc  # noqa: F401  registers MNC, MNCRPN, MNCROIHeads
from .scnet import SCNetROIHeads
from .scnet_mask_head import SCNetMaskHead
from .semantic_cascade_roi_heads import SemanticCascadeROIHeads
from .semantic_head import FusedSemanticHead
from .semantic_rcnn import SemanticRCNN

__all__ = [
    "add_cascades_config",
    "FeatureRelayHead",
    "FusedSemanticHead",
    "GlobalContextHead",
    "HTCMaskHead",
    "HTCROIHeads",
    "SCNetMaskHead",
    "SCNetROIHeads",
    "SemanticCascadeROIHeads",
    "SemanticRCNN",
]

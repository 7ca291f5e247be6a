"""train_net.py with --amp (bfloat16 on the CPU), --tta and activation checkpointing, in the 2-process
CPU (gloo) DDP run."""

import json

import pytest
from omegaconf import OmegaConf

from cascades.engine.config import load_config

from test_train_net import DEMO, cli, logged_iterations, tiny, train_net

PARTS = "[backbone,box_head,mask_head]"


def checkpointing_override():
    # '+' adds the key where the config does not set it.
    has_key = OmegaConf.select(load_config(DEMO), "train.activation_checkpointing", default=None) is not None
    return f"{'' if has_key else '+'}train.activation_checkpointing={PARTS}"


@pytest.mark.slow  # 2 to 6 minutes on a shared 2-core CPU
def test_ddp_two_processes_with_amp_tta_and_checkpointing(tmp_path):
    # The smoke overrides turn AMP off, after --amp's train.amp.enabled=True.
    overrides = [o for o in tiny(tmp_path, 3) if o != "train.amp.enabled=False"]
    result = train_net("--num-gpus", "2", "--dist-url", "auto", "--amp", "--tta", *overrides, checkpointing_override())
    assert result.returncode == 0, result.stdout[-3000:]
    assert "World size: 2" in result.stdout
    assert "Mixed precision on the CPU: the forward pass under torch.bfloat16 autocast" in result.stdout
    assert "CheckpointedBasicBlock" in result.stdout and "CheckpointedFastRCNNConvFCHead" in result.stdout
    assert logged_iterations(tmp_path) == [0, 1, 2]
    with open(tmp_path / "eval_results.json") as f:
        results = json.load(f)
    assert {"bbox", "segm", "bbox_TTA", "segm_TTA"} <= set(results)


def test_unknown_checkpointing_part_fails_before_anything_starts(tmp_path):
    with pytest.raises(SystemExit) as e:
        cli.main(["--config-file", DEMO, checkpointing_override().replace("mask_head", "mask_heads"),
                  f"train.output_dir={tmp_path}/out"])
    assert str(e.value) == ("train_net.py: error: train.activation_checkpointing: unknown part 'mask_heads'; the "
                            "parts are backbone, rpn_head, box_head, mask_head, semantic_head")
    assert not (tmp_path / "out").exists()

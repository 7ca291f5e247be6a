"""torch.export keeps the RoI warp as the custom op ``cascades::roi_warp_forward`` (its fake kernel
gives the shapes), and the saved program runs where only torch, torchvision and the op library are
loaded: no Python code of this project."""
import json
import os
import subprocess
import sys

import torch

import cascades._C
from cascades.layers import RoIWarpPooler
from detectron2.structures import Boxes

# Run in a fresh interpreter: loads the op library by path, runs the program, lists what got imported.
_RELOAD = """
import json, sys, torch, torchvision
torch.ops.load_library(sys.argv[1])
program = torch.export.load(sys.argv[2])
inputs = torch.load(sys.argv[3])
out = program.module()(*inputs)
torch.save(out, sys.argv[4])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("cascades", "detectron2"))))
"""


class _WarpHead(torch.nn.Module):
    """MNC's RoI warp (28 x 28 grid, 2 x 2 max pooling) on two FPN levels, then a conv."""

    def __init__(self):
        super().__init__()
        self.pooler = RoIWarpPooler(28, (1 / 4, 1 / 8), pool_size=2, canonical_level=3)
        self.conv = torch.nn.Conv2d(4, 2, 3)

    def forward(self, p2, p3, boxes):
        return self.conv(self.pooler([p2, p3], [Boxes(boxes)]))


def test_roi_warp_kept_as_custom_op_and_reloaded_without_this_project(tmp_path):
    g = torch.Generator().manual_seed(0)
    inputs = (torch.randn(1, 4, 32, 40, generator=g), torch.randn(1, 4, 16, 20, generator=g),
              torch.tensor([[4.0, 8.0, 60.0, 50.0], [10.0, 2.0, 150.0, 120.0], [0.0, 0.0, 5.0, 3.0]]))
    head = _WarpHead().eval()
    with torch.no_grad():
        program = torch.export.export(head, inputs)
    ops = {n.target for n in program.graph.nodes if n.op == "call_function"}
    assert torch.ops.cascades.roi_warp_forward.default in ops
    torch.export.save(program, str(tmp_path / "head.pt2"))
    torch.save(inputs, tmp_path / "inputs.pt")

    listed = subprocess.run(
        [sys.executable, "-c", _RELOAD, cascades._C.__file__, str(tmp_path / "head.pt2"),
         str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert json.loads(listed.stdout.strip().splitlines()[-1]) == []
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "out.pt"), head(*inputs), rtol=0, atol=0)

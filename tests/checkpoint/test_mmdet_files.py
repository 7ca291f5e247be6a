"""mmdetection checkpoint files and URLs: reading, verified downloads, the conversion cache, and the
mmdet:// path handler under detectron2's own checkpointer."""
import functools
import http.server
import os
import threading

import pytest
import torch

import cascades  # noqa: F401  registers mmdet://
from cascades.checkpoint import CONVERSION_KEY, MMDetConversionError, converted_checkpoint
from cascades.checkpoint import mmdet_files
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from mmdet_samples import loaded_exactly, our_model, save_with_hash, tiny_mmdet_state_dict


def converted_files(cache):
    folder = cache / "converted"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_conversion_is_cached_and_reused(tmp_path, cache, monkeypatch):
    source = save_with_hash(tiny_mmdet_state_dict(), str(tmp_path / "in"))
    out = converted_checkpoint(source)
    saved = torch.load(out, weights_only=True)
    assert saved[CONVERSION_KEY]["architecture"] == "cascade_mask_rcnn"
    assert saved[CONVERSION_KEY]["sha256"] == mmdet_files.sha256_of(source)
    assert "roi_heads.mask_head.2.predictor.weight" in saved["model"]

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(mmdet_files, "convert_mmdet_state_dict", no_second_conversion)
    assert converted_checkpoint(source) == out
    assert converted_files(cache) == [os.path.basename(out)]


def test_truncated_file_is_one_line_and_nothing_is_cached(tmp_path, cache):
    source = tmp_path / "model.pth"
    torch.save({"state_dict": tiny_mmdet_state_dict()}, source)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    with pytest.raises(MMDetConversionError, match=r"Cannot read .*model\.pth as a PyTorch checkpoint .* "
                                                   r"expected an mmdetection \.pth file; is it truncated\?") as e:
        converted_checkpoint(str(source))
    assert "\n" not in str(e.value)
    assert converted_files(cache) == []


def test_file_whose_sha256_differs_from_its_name_is_refused(tmp_path, cache):
    source = save_with_hash(tiny_mmdet_state_dict(), str(tmp_path))
    renamed = source[:-12] + "0123abcd.pth"
    os.rename(source, renamed)
    with pytest.raises(MMDetConversionError, match="is corrupt or truncated: its sha256 starts with .*, its name "
                                                   "says 0123abcd"):
        converted_checkpoint(renamed)
    assert converted_files(cache) == []


def test_unsupported_architecture_leaves_nothing_in_the_cache(tmp_path, cache):
    state_dict = {k: v for k, v in tiny_mmdet_state_dict().items() if not k.startswith("roi_head.mask_head")}
    with pytest.raises(MMDetConversionError, match="Unsupported architecture"):
        converted_checkpoint(save_with_hash(state_dict, str(tmp_path)))
    assert converted_files(cache) == []


def test_missing_file_and_unverifiable_or_unreachable_urls(tmp_path, cache):
    with pytest.raises(MMDetConversionError, match="'nope.pth' does not exist"):
        converted_checkpoint("nope.pth")
    with pytest.raises(MMDetConversionError, match="Cannot verify a download of .*: its file name carries no "
                                                   "sha256 prefix"):
        converted_checkpoint("https://example.org/model.pth")
    # Port 9 (discard) on the loopback: nothing listens, the connection is refused at once.
    with pytest.raises(MMDetConversionError, match=r"Cannot download http://127\.0\.0\.1:9/m-0123abcd\.pth "
                                                   r"\(.*\): expected a reachable mmdetection checkpoint URL"):
        converted_checkpoint("http://127.0.0.1:9/m-0123abcd.pth")
    assert not (cache / "downloads").exists() or os.listdir(cache / "downloads") == []


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on the loopback."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_downloads_are_verified_before_they_are_kept(http_folder, cache):
    folder, url = http_folder
    good = os.path.basename(save_with_hash(tiny_mmdet_state_dict(), str(folder), "good"))
    out = converted_checkpoint(f"{url}/{good}")
    assert os.listdir(cache / "downloads") == [good]
    assert torch.load(out, weights_only=True)[CONVERSION_KEY]["source"] == f"{url}/{good}"

    bad = good.replace("good", "bad")
    data = (folder / good).read_bytes()
    (folder / bad).write_bytes(data[:-100])  # a truncated transfer: the hash no longer matches
    with pytest.raises(MMDetConversionError, match="is corrupt or truncated"):
        converted_checkpoint(f"{url}/{bad}")
    assert os.listdir(cache / "downloads") == [good]


def test_detectron2_checkpointer_loads_mmdet_paths_fully(full_size_file):
    """detectron2's own DetectionCheckpointer (as tools.lazyconfig_train_net uses it) resolves
    mmdet://<file> through the path handler and fills every tensor of the model."""
    source, converted = full_size_file
    assert PathManager.get_local_path(f"mmdet://{source}") == converted_checkpoint(source)
    model = our_model("cascade_mask_rcnn_R_50_FPN_1x")
    DetectionCheckpointer(model).load(f"mmdet://{source}")
    loaded_exactly(model, converted)


def test_predictor_takes_mmdet_paths(full_size_file):
    from cascades.engine import Predictor
    from cascades.model_zoo import get_config

    source, converted = full_size_file
    cfg = get_config("COCO-InstanceSegmentation/mmdet/cascade_mask_rcnn_R_50_FPN_1x.py")
    cfg.train.init_checkpoint, cfg.train.device = f"mmdet://{source}", "cpu"
    loaded_exactly(Predictor(cfg).model, converted)


class _Pickled:
    """An arbitrary object: weights_only=True must refuse to run its unpickling."""


def test_pickled_objects_are_refused_not_executed(tmp_path, cache):
    source = tmp_path / "model.pth"
    torch.save({"state_dict": tiny_mmdet_state_dict(), "meta": {"hook": _Pickled()}}, source)
    with pytest.raises(MMDetConversionError, match=r"holds a pickled .*_Pickled, which "
                                                   r"torch\.load\(weights_only=True\) refuses to execute"):
        converted_checkpoint(str(source))
    assert converted_files(cache) == []

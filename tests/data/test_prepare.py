"""`make datasets`: the converters of balloon's VIA and coco128-seg's YOLO polygons (on tiny local copies
and, when the datasets root has them, on the real files), and fetching: download with its progress and
checks, atomic publication, and one-line errors without a network."""
import http.server
import io
import json
import os
import shutil
import socket
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from cascades.data import prepare
from cascades.data.converters import COCO_THING_CATEGORIES, convert_balloon, convert_coco128_seg
from cascades.data.storage import datasets_root, missing_message


def _image(path, width, height, orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.new("RGB", (width, height), (90, 120, 200)).save(path, exif=exif)


def _via_region(xs, ys):
    return {"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys}, "region_attributes": {}}


def _via(folder, regions_by_file):
    project = {f"{name}{1000 + k}": {"fileref": "", "size": 1000 + k, "filename": name, "base64_img_data": "",
                                     "file_attributes": {}, "regions": regions}
               for k, (name, regions) in enumerate(regions_by_file.items())}
    (folder / "via_region_data.json").write_text(json.dumps(project))


@pytest.fixture
def tiny_balloon(tmp_path):
    """balloon/ as released, 2 train photos (one turned by its EXIF tag) and 1 val photo."""
    folder = tmp_path / "balloon"
    _image(folder / "train" / "b.jpg", 40, 30)
    _image(folder / "train" / "a.jpg", 20, 10, orientation=6)  # stored 20x10, shown 10x20
    _image(folder / "val" / "c.jpg", 16, 16)
    _via(folder / "train", {
        # VIA 1.x: regions a dict; the second polygon reaches past the image and is clipped to it.
        "b.jpg": {"0": _via_region([2, 12, 12, 2, 2], [3, 3, 9, 9, 3]), "1": _via_region([30, 45, 45, 30], [20, 20, 35, 35])},
        "a.jpg": [],  # VIA 2.x: a list, here empty
    })
    _via(folder / "val", {"c.jpg": [_via_region([1, 5, 5], [1, 1, 6])]})
    return folder


def test_balloon_from_via(tiny_balloon):
    convert_balloon(str(tiny_balloon), "the release")
    train = json.loads((tiny_balloon / "train.json").read_text())
    assert train["images"] == [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 20},
                               {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30}]
    assert train["annotations"] == [
        {"id": 1, "image_id": 2, "category_id": 1, "segmentation": [[2.0, 3.0, 12.0, 3.0, 12.0, 9.0, 2.0, 9.0, 2.0, 3.0]],
         "area": 60.0, "bbox": [2.0, 3.0, 10.0, 6.0], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[30.0, 20.0, 40.0, 20.0, 40.0, 30.0, 30.0, 30.0]],
         "area": 100.0, "bbox": [30.0, 20.0, 10.0, 10.0], "iscrowd": 0},
    ]
    assert train["categories"] == [{"id": 1, "name": "balloon", "supercategory": "balloon"}]
    assert train["info"]["source"] == "the release" and train["licenses"] == []
    val = json.loads((tiny_balloon / "val.json").read_text())
    assert [a["image_id"] for a in val["annotations"]] == [1] and val["images"][0]["file_name"] == "c.jpg"
    assert (tiny_balloon / "train" / "b.jpg").is_file() and (tiny_balloon / "train" / "via_region_data.json").is_file()


def test_balloon_other_shapes_are_refused_by_name(tiny_balloon):
    _via(tiny_balloon / "val", {"c.jpg": [{"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 3, "height": 3}}]})
    with pytest.raises(ValueError, match="c.jpg has a 'rect' region; only polygons are converted"):
        convert_balloon(str(tiny_balloon), "x")


@pytest.fixture
def tiny_coco128(tmp_path):
    """coco128-seg/ as released: 2 photos, one with YOLO labels, plus its LICENSE."""
    folder = tmp_path / "coco128-seg"
    _image(folder / "images" / "train2017" / "000000000042.jpg", 20, 10)
    _image(folder / "images" / "train2017" / "000000000007.jpg", 8, 4)  # no label file: no instance
    labels = folder / "labels" / "train2017"
    labels.mkdir(parents=True)
    (labels / "000000000042.txt").write_text(
        "0 0.1 0.2 0.6 0.2 0.6 0.8 0.1 0.8\n"
        "79 0.5 0.5 0.9 0.5 0.9 0.9\n"
        "3 0.5 0.5 0.5 0.5 0.5 0.5\n"  # a polygon that covers no pixel: left out
        "\n")
    (folder / "LICENSE").write_text("GPL-3.0")
    return folder


def test_coco128_seg_from_yolo(tiny_coco128):
    convert_coco128_seg(str(tiny_coco128), "the release")
    data = json.loads((tiny_coco128 / "train.json").read_text())
    assert data["images"] == [
        {"id": 7, "file_name": "000000000007.jpg", "width": 8, "height": 4, "coco_url_hint": "train2017/000000000007.jpg"},
        {"id": 42, "file_name": "000000000042.jpg", "width": 20, "height": 10, "coco_url_hint": "train2017/000000000042.jpg"},
    ]
    assert data["annotations"] == [
        {"id": 1, "image_id": 42, "category_id": 1, "segmentation": [[2.0, 2.0, 12.0, 2.0, 12.0, 8.0, 2.0, 8.0]],
         "area": 60.0, "bbox": [2.0, 2.0, 10.0, 6.0], "iscrowd": 0},
        {"id": 2, "image_id": 42, "category_id": 90, "segmentation": [[10.0, 5.0, 18.0, 5.0, 18.0, 9.0]],
         "area": 16.0, "bbox": [10.0, 5.0, 8.0, 4.0], "iscrowd": 0},
    ]
    assert data["categories"] == COCO_THING_CATEGORIES and len(COCO_THING_CATEGORIES) == 80
    assert COCO_THING_CATEGORIES[79] == {"id": 90, "name": "toothbrush", "supercategory": "indoor"}
    assert sorted(os.listdir(tiny_coco128)) == ["LICENSE", "images", "train.json"]
    assert sorted(os.listdir(tiny_coco128 / "images")) == ["000000000007.jpg", "000000000042.jpg"]


@pytest.mark.parametrize("line, error", [
    ("80 0.1 0.1 0.5 0.1 0.5 0.5", r"000000000042.txt:1: class 80 is not one of the 80 COCO classes"),
    ("0 0.1 0.1 0.5 0.1", r"000000000042.txt:1: a polygon needs at least 3 x y pairs, got 4 numbers"),
    ("0 0.1 0.1 0.5 0.1 0.5 0.5 0.3", r"000000000042.txt:1: a polygon needs at least 3 x y pairs, got 7"),
    ("person 0.1 0.1 0.5 0.1 0.5 0.5", r"000000000042.txt:1: expected 'class x1 y1 x2 y2 \.\.\.' numbers"),
])
def test_coco128_seg_bad_labels_are_named(tiny_coco128, line, error):
    (tiny_coco128 / "labels" / "train2017" / "000000000042.txt").write_text(line + "\n")
    with pytest.raises(ValueError, match=error):
        convert_coco128_seg(str(tiny_coco128), "x")


def test_coco128_seg_label_without_photo_is_refused(tiny_coco128):
    (tiny_coco128 / "labels" / "train2017" / "000000000099.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    with pytest.raises(ValueError, match="label files without a photo .*000000000099"):
        convert_coco128_seg(str(tiny_coco128), "x")


def _real(folder):
    path = os.path.join(datasets_root(), folder)
    if not os.path.isdir(path):
        pytest.skip(missing_message(folder))
    return path


def _link_images(source, target):
    target.mkdir(parents=True)
    for name in os.listdir(source):
        if name.endswith(".jpg"):
            os.symlink(os.path.join(source, name), target / name)


def _without_info(data):
    return {k: v for k, v in data.items() if k != "info"}


def test_balloon_round_trip_of_the_real_files(tmp_path):
    """The real VIA files (kept beside the photos) convert to the real train.json / val.json exactly."""
    real = _real("balloon")
    for split in ("train", "val"):
        _link_images(os.path.join(real, split), tmp_path / "balloon" / split)
        shutil.copy(os.path.join(real, split, "via_region_data.json"), tmp_path / "balloon" / split)
    convert_balloon(str(tmp_path / "balloon"), "x")
    for split in ("train", "val"):
        with open(os.path.join(real, f"{split}.json")) as f:
            expected = json.load(f)
        assert _without_info(json.loads((tmp_path / "balloon" / f"{split}.json").read_text())) == _without_info(expected)


def test_coco128_seg_round_trip_of_the_real_files(tmp_path):
    """YOLO labels written from the real train.json convert back to it (vertices to 0.01 pixel)."""
    real = _real("coco128-seg")
    with open(os.path.join(real, "train.json")) as f:
        expected = json.load(f)
    folder = tmp_path / "coco128-seg"
    _link_images(os.path.join(real, "images"), folder / "images" / "train2017")
    (folder / "labels" / "train2017").mkdir(parents=True)
    index = {c["id"]: k for k, c in enumerate(COCO_THING_CATEGORIES)}
    images = {im["id"]: im for im in expected["images"]}
    lines = {}
    for a in expected["annotations"]:
        im = images[a["image_id"]]
        xy = np.asarray(a["segmentation"][0]).reshape(-1, 2) / [im["width"], im["height"]]
        lines.setdefault(im["file_name"], []).append(" ".join([str(index[a["category_id"]])] + [f"{v:.6f}" for v in xy.ravel()]))
    for file_name, file_lines in lines.items():
        (folder / "labels" / "train2017" / file_name.replace(".jpg", ".txt")).write_text("\n".join(file_lines) + "\n")
    convert_coco128_seg(str(folder), "x")
    data = json.loads((folder / "train.json").read_text())
    assert data["images"] == expected["images"] and data["categories"] == expected["categories"]
    assert len(data["annotations"]) == len(expected["annotations"]) == 704
    for a, b in zip(data["annotations"], expected["annotations"]):
        assert {k: a[k] for k in ("id", "image_id", "category_id", "area", "iscrowd")} == {
            k: b[k] for k in ("id", "image_id", "category_id", "area", "iscrowd")}
        np.testing.assert_allclose(a["segmentation"][0], b["segmentation"][0], atol=0.006)
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.011)


def _zip(folder, path, compression=zipfile.ZIP_DEFLATED):
    """The release's archive: the dataset folder, plus macOS's __MACOSX/ that is not part of it."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for dirpath, _, files in os.walk(folder):
            for name in files:
                full = os.path.join(dirpath, name)
                archive.write(full, os.path.relpath(full, os.path.dirname(folder)))
        archive.writestr("__MACOSX/balloon/._b.jpg", b"resource fork")
    return str(path)


def test_prepare_from_a_local_archive(tiny_balloon, tmp_path):
    archive = _zip(tiny_balloon, tmp_path / "balloon_dataset.zip")
    root = tmp_path / "root"
    summary = prepare.prepare("balloon", str(root), archive=archive)
    assert summary == (f"balloon: train.json 2 images, 2 instances; val.json 1 images, 1 instances in {root / 'balloon'}")
    assert os.listdir(root) == ["balloon"] and os.path.isfile(archive), "the user's archive is kept"
    assert sorted(os.listdir(root / "balloon")) == ["train", "train.json", "val", "val.json"]
    assert prepare.prepare("balloon", str(root), archive=archive).startswith("balloon: already in")


def test_interrupted_conversion_leaves_nothing(tiny_balloon, tmp_path, monkeypatch):
    archive = _zip(tiny_balloon, tmp_path / "balloon_dataset.zip")

    def interrupted(folder, source):
        convert_balloon(folder, source)
        raise KeyboardInterrupt

    monkeypatch.setitem(prepare.SOURCES, "balloon", prepare.SOURCES["balloon"]._replace(convert=interrupted))
    (tmp_path / "root").mkdir()
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare("balloon", str(tmp_path / "root"), archive=archive)
    assert os.listdir(tmp_path / "root") == []


class _Server:
    """A local HTTP server: ``/<name>`` serves ``files[name]``, announcing ``lengths[name]`` bytes if set."""

    def __init__(self, files, lengths=None):
        outer = self
        self.files, self.lengths = files, lengths or {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = outer.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(outer.lengths.get(self.path.lstrip("/"), len(body))))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served_balloon(tiny_balloon, tmp_path, monkeypatch):
    """(server, root): the tiny balloon archive served locally as balloon's source."""
    with open(_zip(tiny_balloon, tmp_path / "served.zip"), "rb") as f:
        server = _Server({"balloon_dataset.zip": f.read()})
    monkeypatch.setitem(prepare.SOURCES, "balloon",
                        prepare.SOURCES["balloon"]._replace(url=f"{server.url}/balloon_dataset.zip"))
    yield server, tmp_path / "root"
    server.close()


def test_download_converts_and_removes_the_archive(served_balloon):
    _, root = served_balloon
    log = io.StringIO()  # not a terminal: progress lines, not a bar
    summary = prepare.prepare("balloon", str(root), stream=log)
    assert summary.startswith("balloon: train.json 2 images")
    assert os.listdir(root) == ["balloon"], "the archive and the downloads folder are gone"
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("balloon_dataset.zip: ") and "(100%) in 0 s, " in lines[0]


def test_truncated_download_is_an_error_and_leaves_nothing(served_balloon):
    server, root = served_balloon
    size = len(server.files["balloon_dataset.zip"])
    server.lengths["balloon_dataset.zip"] = size + 100
    with pytest.raises(prepare.PrepareError, match=f"zip: the connection ended after {size} of {size + 100} bytes; run again"):
        prepare.prepare("balloon", str(root), stream=io.StringIO())
    assert not root.exists()


def test_an_archive_from_an_earlier_run_is_reused(served_balloon, tiny_balloon, tmp_path):
    server, root = served_balloon
    os.makedirs(root / ".downloads")
    shutil.copy(_zip(tiny_balloon, tmp_path / "earlier.zip"), root / ".downloads" / "balloon_dataset.zip")
    server.files.clear()  # a download would fail
    log = io.StringIO()
    assert prepare.prepare("balloon", str(root), stream=log).startswith("balloon: train.json 2 images")
    assert "using" in log.getvalue() and os.listdir(root) == ["balloon"]


def test_damaged_archives_are_named(tiny_balloon, tmp_path):
    archive = _zip(tiny_balloon, tmp_path / "stored.zip", zipfile.ZIP_STORED)
    data = bytearray(open(archive, "rb").read())
    with zipfile.ZipFile(archive) as z:
        member = z.getinfo("balloon/train/via_region_data.json")
    data[member.header_offset + 30 + len(member.filename) + 5] ^= 0xFF  # a byte of that member's contents
    open(archive, "wb").write(bytes(data))
    with pytest.raises(prepare.PrepareError, match="member balloon/train/via_region_data.json fails its CRC check"):
        prepare.prepare("balloon", str(tmp_path / "root"), archive=archive)
    open(archive, "wb").write(bytes(data[: len(data) // 2]))
    with pytest.raises(prepare.PrepareError, match="stored.zip is not a readable zip archive"):
        prepare.prepare("balloon", str(tmp_path / "root"), archive=archive)
    other = _zip(tmp_path / "balloon" / "val", tmp_path / "other.zip")  # no balloon/ folder inside
    with pytest.raises(prepare.PrepareError, match="other.zip has no balloon/ folder"):
        prepare.prepare("balloon", str(tmp_path / "root"), archive=other)
    assert not os.path.exists(tmp_path / "root" / "balloon")


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_download_is_one_line_naming_the_way_out(tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/balloon_dataset.zip"
    monkeypatch.setitem(prepare.SOURCES, "balloon", prepare.SOURCES["balloon"]._replace(url=url))
    root = tmp_path / "root"
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["balloon", "--root", str(root)])
    message = str(exit_info.value.code)
    assert message.startswith(f"error: cannot download {url} (") and "\n" not in message
    assert message.endswith("without a network, download it elsewhere and pass --archive balloon=FILE")
    assert not root.exists(), "the datasets root it created is removed"
    root.mkdir()
    with pytest.raises(SystemExit):
        prepare.main(["balloon", "--root", str(root)])
    assert os.listdir(root) == [], "an existing root stays, as it was"


def test_command_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match="2"):
        prepare.main(["ballon"])
    assert "unknown dataset(s) ballon" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"error: --archive 'balloon=.*nope.zip': .* is not a file"):
        prepare.main(["--archive", f"balloon={tmp_path / 'nope.zip'}", "--root", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"error: --archive 'voc': expected NAME=FILE"):
        prepare.main(["--archive", "voc", "--root", str(tmp_path)])


def test_missing_file_on_the_server_is_one_line(served_balloon):
    server, root = served_balloon
    server.files.clear()
    with pytest.raises(prepare.PrepareError, match=r"^cannot download http://\S+/balloon_dataset.zip \(Not Found\); "):
        prepare.prepare("balloon", str(root), stream=io.StringIO())
    assert not root.exists()

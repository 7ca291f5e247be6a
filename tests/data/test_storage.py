"""The datasets root and the atomic writes every dataset file goes through."""
import json
import os

import pytest

from cascades.data import storage


def test_datasets_root_is_detectron2s_convention(monkeypatch):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    assert storage.datasets_root() == "datasets"
    monkeypatch.setenv("DETECTRON2_DATASETS", "")
    assert storage.datasets_root() == "datasets"
    monkeypatch.setenv("DETECTRON2_DATASETS", "~/data")
    assert storage.datasets_root() == os.path.expanduser("~/data")
    assert storage.missing_message("balloon") == (
        f"balloon not found under {os.path.expanduser('~/data')} (set DETECTRON2_DATASETS or run `make datasets`)")


def test_published_folder_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "data" / "set"
    with pytest.raises(KeyboardInterrupt):
        with storage.publish_folder(str(final)) as staged:
            open(os.path.join(staged, "half.json"), "w").close()
            raise KeyboardInterrupt
    assert os.listdir(tmp_path / "data") == []
    with storage.publish_folder(str(final)) as staged:
        open(os.path.join(staged, "whole.json"), "w").close()
    assert os.listdir(tmp_path / "data") == ["set"] and os.listdir(final) == ["whole.json"]


def test_a_folder_published_first_by_another_process_is_kept(tmp_path):
    final = tmp_path / "set"
    with storage.publish_folder(str(final)) as staged:
        open(os.path.join(staged, "mine"), "w").close()
        final.mkdir()
        (final / "theirs").write_text("")
    assert os.listdir(final) == ["theirs"] and os.listdir(tmp_path) == ["set"]


def test_write_json_replaces_whole_files_readable_by_all(tmp_path):
    path = tmp_path / "a" / "x.json"
    storage.write_json(str(path), {"v": 1})
    storage.write_json(str(path), {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2} and os.listdir(path.parent) == ["x.json"]
    assert path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(TypeError):
        storage.write_json(str(path), {"v": object()})
    assert json.loads(path.read_text()) == {"v": 2} and os.listdir(path.parent) == ["x.json"]


def test_writable_honours_the_mode_bits(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o555)
    assert storage.writable(str(tmp_path)) and not storage.writable(str(read_only))
    assert not storage.writable(str(tmp_path / "missing"))

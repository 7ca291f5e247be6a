"""Fetches the small real datasets and converts them into the layout :mod:`cascades.data.builtin`
registers (what ``make datasets`` runs)::

    python -m cascades.data.prepare [balloon] [coco128-seg] [--root DIR] [--archive NAME=FILE]

For each dataset not already in the datasets root (``$DETECTRON2_DATASETS``, else ``./datasets``): its
public archive is downloaded (a progress bar on a terminal, a line every 10 seconds otherwise) into
``<root>/.downloads``, checked (the size the server announced, every member's CRC), extracted and
converted in a temporary folder beside its final place, and renamed into place. An interrupted run
leaves no dataset folder behind, only a complete archive, which the next run reuses; the archive is
deleted once its dataset is in place. Neither source publishes checksums. Without a network, download the
archives elsewhere and pass them with ``--archive``.
"""
import argparse
import http.client
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from typing import Callable, NamedTuple, Optional

from ..engine.progress import Progress
from .converters import convert_balloon, convert_coco128_seg
from .storage import datasets_root, publish_folder

__all__ = ["SOURCES", "PrepareError", "download", "prepare"]


class Source(NamedTuple):
    url: str
    convert: Callable[[str, str], None]  # (extracted folder, source) -> None, in place
    splits: tuple  # the json files it writes, for the summary


SOURCES = {
    "balloon": Source("https://github.com/matterport/Mask_RCNN/releases/download/v2.1/balloon_dataset.zip",
                      convert_balloon, ("train", "val")),
    "coco128-seg": Source("https://github.com/ultralytics/assets/releases/download/v0.0.0/coco128-seg.zip",
                          convert_coco128_seg, ("train",)),
}
_CHUNK = 1 << 20


class PrepareError(RuntimeError):
    """A dataset could not be fetched or converted; the message is one line saying why and what to do."""


def download(url: str, path: str, hint: str = "", stream=None) -> None:
    """Downloads ``url`` to ``path`` through a ``.partial`` file beside it, checking the size the server announced;
    raises :class:`PrepareError` and leaves no file on failure (``hint`` ends the message when the
    server cannot be reached)."""
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (OSError, http.client.HTTPException) as e:  # URLError (no route, no name, HTTP errors) is an OSError
        raise PrepareError(f"cannot download {url} ({getattr(e, 'reason', e)}){hint}") from None
    # A name of its own: two runs at once each write their own file, and the last complete one stays.
    fd, partial = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".partial", dir=os.path.dirname(path))
    try:
        with response, os.fdopen(fd, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            progress = Progress(os.path.basename(path), total, unit="B", stream=stream)
            try:
                while chunk := _read(response, url, progress.done):
                    f.write(chunk)
                    progress.update(len(chunk))
            finally:
                progress.close()
        if total is not None and progress.done != total:
            raise PrepareError(f"{url}: the connection ended after {progress.done} of {total} bytes; run again")
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _read(response, url: str, done: int) -> bytes:
    try:
        return response.read(_CHUNK)
    except (OSError, http.client.HTTPException) as e:
        raise PrepareError(f"{url}: the connection failed after {done} bytes ({e}); run again") from None


def _check_archive(path: str) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError) as e:
        raise PrepareError(f"{path} is not a readable zip archive ({e})") from None
    if bad is not None:
        raise PrepareError(f"{path}: member {bad} fails its CRC check (a damaged archive)")


def _extract(path: str, folder: str, out: str) -> None:
    """Extracts the members under ``folder/`` of the archive into ``out``, without that prefix (the rest,
    e.g. macOS's ``__MACOSX/``, is not part of the dataset)."""
    prefix = folder.rstrip("/") + "/"
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if m.filename.startswith(prefix) and m.filename != prefix]
        if not members:
            raise PrepareError(f"{path} has no {prefix} folder: not the {folder} archive")
        for member in members:
            member.filename = member.filename[len(prefix):]
            archive.extract(member, out)  # zipfile drops absolute paths and '..' (no writes outside out)


def _summary(name: str, folder: str) -> str:
    parts = []
    for split in SOURCES[name].splits:
        with open(os.path.join(folder, f"{split}.json")) as f:
            data = json.load(f)
        parts.append(f"{split}.json {len(data['images'])} images, {len(data['annotations'])} instances")
    return f"{name}: {'; '.join(parts)} in {folder}"


def prepare(name: str, root: str, archive: Optional[str] = None, stream=None) -> str:
    """Puts dataset ``name`` (a key of SOURCES) under ``root`` unless it is there; returns a summary
    line. ``archive``: a local copy of its archive, used instead of downloading (and kept)."""
    source, final = SOURCES[name], os.path.join(root, name)
    if os.path.exists(final):
        return f"{name}: already in {final} (delete that folder to fetch it again)"
    downloads = os.path.join(root, ".downloads")
    ours = archive is None  # downloaded here: removed once used, or when damaged
    if ours:
        archive = _fetch(name, downloads, stream)
    try:
        _check_archive(archive)
    except PrepareError:
        if ours:
            _remove(archive, downloads)
        raise
    with publish_folder(final) as staged:
        _extract(archive, name, staged)
        try:
            source.convert(staged, source.url)
        except (ValueError, KeyError, OSError) as e:
            raise PrepareError(f"{name}: cannot convert {archive}: {e}") from None
    if ours:
        _remove(archive, downloads)
    return _summary(name, final)


def _fetch(name: str, downloads: str, stream=None) -> str:
    """The archive of ``name`` in ``downloads``: a complete one left by an earlier run, else downloaded."""
    url = SOURCES[name].url
    archive = os.path.join(downloads, os.path.basename(url))
    if os.path.isfile(archive):
        print(f"{name}: using {archive}, downloaded by an earlier run", file=stream or sys.stderr)
        return archive
    new_root = not os.path.isdir(os.path.dirname(downloads))
    os.makedirs(downloads, exist_ok=True)
    try:
        download(url, archive, f"; without a network, download it elsewhere and pass --archive {name}=FILE", stream)
    except BaseException:
        _remove(None, downloads)
        if new_root:  # an empty datasets root would change where the generated shapes go
            os.rmdir(os.path.dirname(downloads))
        raise
    return archive


def _remove(archive: Optional[str], downloads: str) -> None:
    """Removes ``archive`` (if given), then the downloads folder if nothing else is in it."""
    if archive is not None:
        os.remove(archive)
    if os.path.isdir(downloads) and not os.listdir(downloads):
        os.rmdir(downloads)


def _parse_archives(pairs):
    archives = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        path = os.path.expanduser(path)
        if not sep or name not in SOURCES:
            raise PrepareError(f"--archive {pair!r}: expected NAME=FILE with NAME one of {sorted(SOURCES)}")
        if not os.path.isfile(path):
            raise PrepareError(f"--archive {pair!r}: {path} is not a file")
        archives[name] = path
    return archives


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"datasets to fetch, of {sorted(SOURCES)} (default: all)")
    parser.add_argument("--root", default=None, help="datasets root (default: $DETECTRON2_DATASETS, else ./datasets)")
    parser.add_argument("--archive", action="append", default=[], metavar="NAME=FILE",
                        help="use this local copy of NAME's archive instead of downloading it")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SOURCES]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; expected some of {sorted(SOURCES)}")
    root = datasets_root() if args.root is None else args.root
    try:
        archives = _parse_archives(args.archive)
        for name in args.names or sorted(SOURCES):
            print(prepare(name, root, archives.get(name)), flush=True)
    except (PrepareError, OSError) as e:  # OSError: e.g. a full disk or a read-only root
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: no dataset was left half-written; run again to finish")


if __name__ == "__main__":
    main()

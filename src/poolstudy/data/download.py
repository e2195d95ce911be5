"""``dataset.download``: whether a missing dataset is fetched by torchvision into the cache.

``true`` downloads, ``false`` never touches the network, ``auto`` (the default) downloads only
when a quick probe of the download server answers. The probe is one HTTP HEAD request in a
daemon thread with a hard deadline, so neither a slow DNS lookup nor a silently dropped
connection can hold a job for longer than ``PROBE_TIMEOUT_S``; it honours the usual
``https_proxy``/``http_proxy`` variables, like torchvision's own download.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from poolstudy.errors import DataError

DOWNLOAD_CHOICES = "true, false or auto"
PROBE_TIMEOUT_S = 3.0
OFFLINE_CHOICE = "or train offline on dataset=shapes (synthetic shapes, no files needed)"


def download_fix(cache_dir: Path) -> str:
    """The end of a "not found" message: how to get the files another way."""
    return (f"set dataset.download=true on a machine with network access (torchvision downloads it into "
            f"{cache_dir / 'download'}), {OFFLINE_CHOICE}")


def download_setting(value: Any) -> bool | str:
    """``dataset.download`` as True, False or "auto"; anything else is refused by name."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[value.lower()]
    raise DataError(
        f"dataset.download = {value!r} is not valid: it must be {DOWNLOAD_CHOICES} (auto: download into "
        f"cache_dir/download only when the files are missing and the download server answers)."
    )


def server_urls(tv_class: str) -> list[str]:
    """The URLs torchvision downloads ``tv_class`` from (its mirrors, in its order)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, tv_class)
    if hasattr(cls, "mirrors"):
        return list(cls.mirrors)
    return [cls.url]


def network_answers(url: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(True, "") when ``url``'s server gives any HTTP answer within ``timeout`` s, else (False, why).

    An HTTP error status (403, 404, ...) counts as an answer: the server is reachable.
    """
    result: list[tuple[bool, str]] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                result.append((True, ""))
        except urllib.error.HTTPError:
            result.append((True, ""))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            result.append((False, str(reason) or type(exc).__name__))

    thread = threading.Thread(target=probe, name="poolstudy-download-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not result:
        return False, f"no answer within {timeout:g} s"
    return result[0]


def should_download(setting: bool | str, tv_class: str) -> tuple[bool, str]:
    """Decide for missing files: (download?, why not) — the reason goes into the error message.

    Each of torchvision's mirrors is probed in turn until one answers.
    """
    if setting is False:
        return False, "dataset.download=false"
    urls = server_urls(tv_class)
    failures = []
    for url in urls:
        ok, why = network_answers(url)
        if ok:
            return True, ""
        failures.append((urllib.parse.urlparse(url).netloc, why))
    if len(failures) == 1:
        unreachable = f"the download server {failures[0][0]} did not answer ({failures[0][1]})"
    else:
        unreachable = "none of the download servers answered (" + "; ".join(f"{h}: {w}" for h, w in failures) + ")"
    if setting is True:
        raise DataError(
            f"dataset.download=true but {unreachable}. Download on a machine with network access and copy the files "
            f"into data_dir, or train offline on dataset=shapes."
        )
    return False, f"dataset.download=auto and {unreachable}"


def fetch_with_torchvision(tv_class: str, root) -> None:
    """Download ``tv_class``'s train and test files into ``root`` with torchvision (checksums verified)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, tv_class)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except (RuntimeError, OSError) as exc:  # network failures, torchvision's integrity errors
        raise DataError(
            f"Downloading {tv_class} with torchvision into {root} failed ({str(exc).splitlines()[0] if str(exc) else exc}). "
            f"Retry, or copy the files into data_dir from a machine with network access, or train offline on "
            f"dataset=shapes."
        ) from None

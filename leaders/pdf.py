"""HTML -> PDF with headless Chromium, and PDF -> PNG with poppler's ``pdftoppm``.

Why Chromium: it is already a dependency (the wall display's tests run in it), it prints the
digest's CSS (A4 pages, page breaks) and inline SVG faithfully, and it keeps text as text, so
the figures of a digest can be searched and checked in the PDF's text layer. It runs with a
throw-away profile, no network services and no sandbox (containers), and is killed if it
hangs: a digest run must never leave a browser behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from leaders.digest_data import DigestError

log = logging.getLogger(__name__)

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str:
    explicit = os.environ.get("BANDO_CHROMIUM")
    if explicit:
        return explicit
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise DigestError("Chromium is not installed (Debian: apt-get install chromium)")


def html_to_pdf(html: str | Path, pdf: str | Path, timeout: float = 120.0) -> Path:
    """Print an HTML file to PDF. Raises ``DigestError`` when Chromium fails or hangs."""
    src, out = Path(html).resolve(), Path(pdf).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    with tempfile.TemporaryDirectory(prefix="bando-pdf-") as profile:
        cmd = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-extensions", "--no-pdf-header-footer",
               f"--user-data-dir={profile}", f"--print-to-pdf={out}", src.as_uri()]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise DigestError(f"Chromium did not print {src.name} in {timeout:.0f}s") from None
        finally:
            _kill_group(proc)  # a renderer left behind by a crashed browser
    if proc.returncode != 0 or not out.is_file() or out.read_bytes()[:5] != b"%PDF-":
        tail = output.decode("utf-8", "replace")[-800:] if output else ""
        raise DigestError(f"Chromium could not print {src.name} (exit {proc.returncode}): {tail}")
    log.info("printed %s (%d bytes)", out, out.stat().st_size)
    return out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(10)


def pdf_to_png(pdf: str | Path, png: str | Path, page: int = 1, dpi: int = 80,
               timeout: float = 60.0) -> Path:
    """One page of a PDF as PNG (``pdftoppm``, Debian package poppler-utils)."""
    tool = shutil.which("pdftoppm")
    if tool is None:
        raise DigestError("pdftoppm is not installed (Debian: apt-get install poppler-utils)")
    out = Path(png)
    # pdftoppm appends ".png" to the name it is given; not with_suffix, which would cut a
    # dotted id ("digest-district.hcm-2024-W15") at its dot
    stem = out.with_name(out.name.removesuffix(".png"))
    subprocess.run([tool, "-f", str(page), "-l", str(page), "-png", "-r", str(dpi),
                    "-singlefile", str(pdf), str(stem)], check=True, timeout=timeout,
                   capture_output=True)
    produced = stem.with_name(stem.name + ".png")
    if produced != out:
        produced.replace(out)
    return out

"""The stack tests' base image: no registry is reachable here, so it is Debian bookworm
(minbase + python3, venv, CA certificates) made with debootstrap and `docker import`ed."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from deploy_tools import run_checked

BASE_IMAGE = "vitserve-test/bookworm:base"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
CACHE = Path(os.environ.get("VITSERVE_DEPLOY_CACHE", "/tmp/vitserve-deploy-cache"))


def debian_mirror() -> str:
    """The Debian mirror that this machine's apt uses (VITSERVE_DEBIAN_MIRROR overrides)."""
    if mirror := os.environ.get("VITSERVE_DEBIAN_MIRROR"):
        return mirror
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.suffix not in ("", ".list", ".sources") or not path.is_file():
            continue
        for uri in re.findall(r"(?:^deb|^URIs:)\s+(?:\[[^]]*\]\s+)?(\S+)", path.read_text(), re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def base_rootfs_tar() -> Path:
    """The debootstrapped tree, made once and kept as a tarball in CACHE, with this machine's
    extra CA certificates (an intercepting egress proxy's, where there is one) so that pip and
    apt in the builds trust what the host trusts."""
    tarball = CACHE / "bookworm-python3.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is missing: apt-get install debootstrap", pytrace=False)
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    rootfs.chmod(0o755)  # it becomes the image's /: mkdtemp's 0700 would lock out non-root
    try:
        run_checked(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(rootfs),
                debian_mirror(),
            ],
            timeout=1200,
        )
        local_cas = Path("/usr/local/share/ca-certificates")
        if local_cas.is_dir():
            shutil.copytree(local_cas, rootfs / local_cas.relative_to("/"), dirs_exist_ok=True)
        shutil.copyfile(
            "/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt"
        )
        partial = tarball.with_suffix(".partial")
        run_checked(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=600)
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


def import_base_image(env: dict[str, str]) -> str:
    """Imports the base into the engine of `env`; returns its tag."""
    run_checked(
        [
            "docker",
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "--change",
            'CMD ["/bin/bash"]',
            str(base_rootfs_tar()),
            BASE_IMAGE,
        ],
        env=env,
        timeout=600,
    )
    return BASE_IMAGE

#!/usr/bin/env python3
"""Install Debian's own HTCondor build into a private prefix, without touching the system.

Debian 12 has no HTCondor package, and PyPI's ``htcondor`` wheel carries only the Python
bindings. This installer fetches Debian's ``condor`` package (and the few newer base
libraries it needs) through a *private* apt configuration, unpacks them with ``dpkg -x``
into ``PREFIX`` and patches every dynamic ELF file so that it loads its loader and
libraries from the prefix. The system's own libraries are never replaced.

Version policy (how the install stays reproducible while Debian's archive moves on):

* ``condor.lock`` (beside this file) names the HTCondor version the project was tested
  with. If Debian's archive still serves it (sid or testing), exactly that is installed.
* If the archive has moved on, the installer *follows Debian* within the supported major
  series (``SUPPORTED_SERIES``) and says so loudly; anything else is an error that names
  what to change.
* The version actually installed is written to ``PREFIX/../constraints.txt`` as
  ``htcondor==<version>``, so the project's virtualenv installs bindings of exactly the
  daemons' version.

Downloads are cached in ``CACHE``; a second run with an installed prefix is a no-op.
This script needs only the Python standard library plus ``apt-get``, ``dpkg`` and
``patchelf`` (Debian 12 packages), so it can run before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCK_FILE = HERE / "condor.lock"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MIRROR = "http://deb.debian.org/debian"
SUITES = ("unstable", "testing")
# Newer base libraries condor needs than Debian 12 has (glibc >= 2.38, GLIBCXX_3.4.32,
# PCRE2 10.47). Everything else condor links resolves to Debian 12's own libraries.
RUNTIME_PACKAGES = ("libc6", "libstdc++6", "libgcc-s1", "libpcre2-8-0")
SUPPORTED_SERIES = "25."
STAMP = ".pcc-condor-installed.json"
LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib", "usr/lib/condor")


class InstallError(Exception):
    """A failure the user can act on; printed as one line."""


@dataclass(frozen=True)
class Choice:
    """Which Debian package version to install, and why."""

    deb_version: str
    upstream: str
    followed_debian: bool
    note: str


def upstream_of(deb_version: str) -> str:
    """``25.14.1+dfsg-1`` -> ``25.14.1`` (epoch, repack suffix and revision dropped)."""
    v = deb_version.split(":", 1)[-1]
    v = v.rsplit("-", 1)[0] if "-" in v else v
    return re.split(r"[+~]", v, maxsplit=1)[0]


def _version_key(upstream: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", upstream))


def choose_version(available: list[str], locked: str, series: str = SUPPORTED_SERIES) -> Choice:
    """Pick the Debian ``condor`` version to install from those the archive serves.

    Prefers the locked (tested) upstream version; otherwise the newest one in the
    supported series. Raises InstallError when neither exists.
    """
    if not available:
        raise InstallError(
            "Debian's archive lists no 'condor' package in "
            f"{'/'.join(SUITES)}; check network access to the Debian mirror"
        )
    exact = [v for v in available if upstream_of(v) == locked]
    if exact:
        best = max(exact, key=lambda v: _version_key(v))
        return Choice(best, locked, False, f"condor {locked} as locked in condor.lock")
    in_series = [v for v in available if upstream_of(v).startswith(series)]
    if not in_series:
        raise InstallError(
            f"Debian now serves condor {', '.join(sorted(set(map(upstream_of, available))))}, "
            f"none of them {locked} or in the supported {series}x series; "
            "update condor_config/condor.lock and the htcondor range in pyproject.toml"
        )
    best = max(in_series, key=lambda v: _version_key(upstream_of(v)))
    up = upstream_of(best)
    return Choice(
        best,
        up,
        True,
        f"Debian no longer serves the locked condor {locked}; following Debian to {up} "
        "(bindings will be installed to match; update condor.lock once tested)",
    )


def read_lock(path: Path = LOCK_FILE) -> str:
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise InstallError(f"{path}: no 'version = ...' line")


class PrivateApt:
    """An apt configuration of our own: own lists, cache and status; system apt untouched."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for d in ("lists/partial", "archives/partial", "etc/preferences.d", "etc/sources.list.d"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "status").touch()
        sources = "".join(f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n" for suite in SUITES)
        (root / "etc/sources.list").write_text(sources)
        conf = {
            "Dir::State": root,
            "Dir::State::lists": root / "lists",
            "Dir::State::status": root / "status",
            "Dir::Cache": root,
            "Dir::Cache::archives": root / "archives",
            "Dir::Etc::SourceList": root / "etc/sources.list",
            "Dir::Etc::SourceParts": root / "etc/sources.list.d",
            "Dir::Etc::Preferences": root / "etc/preferences",
            "Dir::Etc::PreferencesParts": root / "etc/preferences.d",
            "Acquire::Languages": "none",
            "APT::Architecture": "amd64",
        }
        lines = [f'{k} "{v}";' for k, v in conf.items()]
        if os.geteuid() == 0:
            lines.append('APT::Sandbox::User "root";')
        (root / "apt.conf").write_text("\n".join(lines) + "\n")
        self.env = {**os.environ, "APT_CONFIG": str(root / "apt.conf"), "LC_ALL": "C"}

    def run(self, *args: str) -> str:
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise InstallError(f"{' '.join(args[:2])} failed: {proc.stderr.strip()[-400:]}")
        return proc.stdout

    def update(self, max_age_s: float = 6 * 3600) -> None:
        stamp = self.root / "lists" / ".updated"
        if stamp.exists() and time.time() - stamp.stat().st_mtime < max_age_s:
            return
        self.run("apt-get", "update", "-q")
        stamp.touch()

    def versions(self, package: str) -> list[str]:
        out = self.run("apt-cache", "madison", package)
        return sorted({line.split("|")[1].strip() for line in out.splitlines() if "|" in line})

    def candidate(self, package: str) -> str:
        out = self.run("apt-cache", "policy", package)
        m = re.search(r"Candidate:\s*(\S+)", out)
        if not m or m.group(1) == "(none)":
            raise InstallError(f"Debian's archive has no candidate for {package}")
        return m.group(1)

    def download(self, package: str, version: str, cache: Path) -> Path:
        name = f"{package}_{version.replace(':', '%3a')}_"
        hits = sorted(cache.glob(name + "*.deb"))
        if hits:
            return hits[0]
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            proc = subprocess.run(
                ["apt-get", "download", "-q", f"{package}={version}"],
                env=self.env,
                cwd=tmp,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise InstallError(f"apt-get download {package}={version}: {proc.stderr.strip()[-300:]}")
            (deb,) = Path(tmp).glob("*.deb")
            target = cache / deb.name
            deb.replace(target)
        return target


def elf_kind(path: Path) -> tuple[bool, bool]:
    """(is dynamically linked, has a program interpreter) from the ELF program headers."""
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:  # ELF64 only
                return False, False
            phoff = struct.unpack_from("<Q", head, 0x20)[0]
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            fh.seek(phoff)
            table = fh.read(phentsize * phnum)
    except OSError:
        return False, False
    types = {struct.unpack_from("<I", table, i * phentsize)[0] for i in range(phnum)}
    return 2 in types, 3 in types  # PT_DYNAMIC, PT_INTERP


def loader_of(prefix: Path) -> Path:
    return prefix / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"


def patch_files(prefix: Path, files: list[Path]) -> int:
    """Point condor's dynamic ELF files at the prefix's loader and libraries (an RPATH,
    not a RUNPATH, so the newer libraries' own dependencies also load from the prefix)."""
    rpath = ":".join(str(prefix / d) for d in LIB_DIRS)
    patched = 0
    for path in files:
        if path.is_symlink() or not path.is_file():
            continue
        dynamic, has_interp = elf_kind(path)
        if not dynamic:  # not ELF, or static
            continue
        args = ["patchelf", "--force-rpath", "--set-rpath", rpath]
        if has_interp:
            args += ["--set-interpreter", str(loader_of(prefix))]
        subprocess.run([*args, str(path)], check=True, capture_output=True)
        patched += 1
    return patched


def unresolved_libraries(prefix: Path) -> list[str]:
    """Libraries condor's main binaries cannot find (empty when the install is sound)."""
    missing: list[str] = []
    for name in (
        "usr/sbin/condor_master",
        "usr/sbin/condor_schedd",
        "usr/bin/condor_q",
        "usr/bin/condor_submit",
        "usr/sbin/condor_startd",
        "usr/sbin/condor_collector",
        "usr/bin/condor_dagman",
        "usr/sbin/condor_starter",
        "usr/sbin/condor_shadow",
        "usr/libexec/condor/condor_chirp",
    ):
        binary = prefix / name
        if not binary.exists():
            missing.append(f"{name} (not in the package)")
            continue
        out = subprocess.run(
            [str(loader_of(prefix)), "--list", str(binary)], capture_output=True, text=True, check=False
        )
        missing += [f"{name}: {line.strip()}" for line in out.stdout.splitlines() if "not found" in line]
    return missing


def condor_version(prefix: Path) -> str | None:
    binary = prefix / "usr/bin/condor_version"
    if not binary.exists():
        return None
    proc = subprocess.run(
        [str(binary)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "CONDOR_CONFIG": "/dev/null"},
    )
    m = re.search(r"\$CondorVersion:\s*(\S+)", proc.stdout)
    return m.group(1) if m else None


def install(prefix: Path, cache: Path, locked: str, force: bool = False) -> dict[str, object]:
    prefix, cache = prefix.resolve(), cache.resolve()
    stamp = prefix / STAMP
    if stamp.exists() and not force:
        info = json.loads(stamp.read_text())
        if condor_version(prefix) == info.get("version"):
            info["action"] = "already installed"
            return info
    for tool in ("apt-get", "dpkg", "patchelf"):
        if shutil.which(tool) is None:
            raise InstallError(f"'{tool}' is missing; install it with: apt-get install {tool}")
    cache.mkdir(parents=True, exist_ok=True)
    apt = PrivateApt(cache / "apt")
    apt.update()
    choice = choose_version(apt.versions("condor"), locked)
    debs = [apt.download("condor", choice.deb_version, cache)]
    debs += [apt.download(pkg, apt.candidate(pkg), cache) for pkg in RUNTIME_PACKAGES]

    # Unpack and patch in place (paths are baked into the files), marked installed last.
    shutil.rmtree(prefix, ignore_errors=True)
    prefix.mkdir(parents=True)
    subprocess.run(["dpkg", "-x", str(debs[0]), str(prefix)], check=True)
    condor_files = [p for p in prefix.rglob("*") if "usr/share" not in str(p)]
    for deb in debs[1:]:
        subprocess.run(["dpkg", "-x", str(deb), str(prefix)], check=True)
    patched = patch_files(prefix, condor_files)
    missing = unresolved_libraries(prefix)
    if missing:
        raise InstallError("condor cannot load: " + "; ".join(missing[:5]))
    got = condor_version(prefix)
    if got != choice.upstream:
        raise InstallError(f"installed condor reports version {got!r}, expected {choice.upstream}")
    info = {
        "version": got,
        "deb_version": choice.deb_version,
        "followed_debian": choice.followed_debian,
        "note": choice.note,
        "packages": [d.name for d in debs],
        "patched_elf_files": patched,
        "action": "installed",
    }
    stamp.write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", type=Path, required=True, help="where condor is unpacked")
    ap.add_argument("--cache", type=Path, required=True, help="download cache (.deb files, apt lists)")
    ap.add_argument("--constraints", type=Path, help="write 'htcondor==<installed version>' here")
    ap.add_argument("--force", action="store_true", help="reinstall even if installed")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        info = install(args.prefix, args.cache, read_lock(), force=args.force)
    except (InstallError, subprocess.CalledProcessError) as exc:
        print(f"install_condor: error: {exc}", file=sys.stderr)
        return 1
    if args.constraints:
        pin = f"htcondor=={info['version']}\n"
        args.constraints.parent.mkdir(parents=True, exist_ok=True)
        if not args.constraints.exists() or args.constraints.read_text() != pin:
            args.constraints.write_text(pin)  # rewritten only on change: make keys on its mtime
    if info.get("followed_debian"):
        print(f"install_condor: WARNING: {info['note']}", file=sys.stderr)
    print(
        f"install_condor: condor {info['version']} {info['action']} in {args.prefix} "
        f"({time.monotonic() - t0:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

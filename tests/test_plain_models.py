"""The daemon runs on plain models built from a child's validation (issue 20, memory).

Oracle: pydantic itself. Every full config in the repository's docs and examples is
validated here with pydantic, and in a separate plain-models process through the
child (`load_validated`): both must give the same values, the same derived
properties and the same catalog answers. And the daemon's process never loads
pydantic.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConfigError, parse_config
from gateway.config.plain import BaseModel, Field
from gateway.config.snapshot import restore, values_of
from tests.support import (
    GatewayProcess,
    Mosquitto,
    Subscriber,
    running,
    sim_header,
    tmp102_devices,
    write_config,
)

REPO = Path(__file__).resolve().parent.parent


def _full_configs(tmp_path: Path) -> list[Path]:
    """Every config/*.yaml and YAML block of the docs that validates, a fragment (a
    `devices:` list, one section) completed with the sections it lacks."""
    texts = [p.read_text() for p in sorted((REPO / "config").glob("*.yaml"))]
    for md in [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]:
        texts += re.findall(r"```yaml\n(.*?)```", md.read_text(), re.S)
    found = []
    for i, text in enumerate(texts):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if isinstance(data, list):
            data = {"devices": data}
        if not isinstance(data, dict):
            continue
        data.setdefault("gateway", {"id": "docs"})
        data.setdefault("mqtt", {"host": "127.0.0.1"})
        data.setdefault("buffer", {"path": str(tmp_path / f"spool{i}.db")})
        whole = yaml.safe_dump(data)
        try:
            parse_config(whole)
        except ConfigError:
            continue
        path = tmp_path / f"c{i}.yaml"
        path.write_text(whole)
        found.append(path)
    return found


#: What the daemon derives from a config (properties and catalog lookups); run in
#: both processes (as text: importing this module would load pydantic there).
DESCRIBE = """
def described(cfg):
    from gateway.catalog.registry import quantities_for
    return {
        "topic_prefix": cfg.topic_prefix,
        "client_id": cfg.client_id,
        "quantities": {d.name: list(quantities_for(d)) for d in cfg.devices},
        "device": [type(cfg.device(d.name)).__qualname__ for d in cfg.devices],
        "outputs": [[o.name, o.binary] for o in cfg.outputs],
    }
"""


def _described(cfg: Any) -> Any:
    scope: dict[str, Any] = {}
    exec(DESCRIBE, scope)
    return scope["described"](cfg)


PLAIN_PROBE = textwrap.dedent("""
    import json, sys
    from gateway.config.mode import use_plain_models
    assert use_plain_models()
    from gateway.config.snapshot import load_validated, values_of
    exec(sys.argv[1])
    out = []
    for path in sys.argv[2:]:
        cfg = load_validated(path)
        out.append((values_of(cfg), described(cfg)))
    import gateway.commands.run  # everything `edge-gateway run` loads
    out.append(sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core")))
    print(json.dumps(out))
""")


def _plain(*args: str) -> Any:
    done = subprocess.run([sys.executable, "-c", PLAIN_PROBE, DESCRIBE, *args],
                          capture_output=True, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def _classes(tree: Any) -> set[str]:
    """The model classes in a `values_of` tree."""
    if isinstance(tree, dict) and "model" in tree:
        inner = [_classes(v) for v in tree["values"].values()]
        return {tree["model"].rpartition(":")[2]}.union(*inner)
    if isinstance(tree, dict):
        return set().union(set(), *(_classes(v) for v in tree.values()))
    if isinstance(tree, list):
        return set().union(set(), *(_classes(v) for v in tree))
    return set()


def test_every_documented_config_is_the_same_on_plain_models(tmp_path: Path) -> None:
    from gateway.config import load_config

    paths = _full_configs(tmp_path)
    assert len(paths) >= 5, "too few whole configs in docs/ to compare"
    *results, loaded = _plain(*map(str, paths))
    assert loaded == [], f"the daemon's imports load pydantic: {loaded}"
    seen: set[str] = set()
    for path, (plain_values, plain_described) in zip(paths, results, strict=True):
        cfg = load_config(path)
        assert plain_values == values_of(cfg), path.read_text()
        assert plain_described == _described(cfg), path.read_text()
        seen |= _classes(plain_values)
    # Not a vacuous comparison: sections, several drivers and nested models took part.
    assert {"Config", "MqttSection", "BufferSection", "TMP102Config"} <= seen, seen
    assert len(seen) >= 25, seen


def test_problems_come_back_from_the_child_as_check_reports_them(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {id: Bad}\nmqtt: {port: x}\ndevices: []\n")
    missing = tmp_path / "missing.yaml"
    probe = textwrap.dedent("""
        import sys
        from gateway.config.mode import use_plain_models
        use_plain_models()
        from gateway.config.problems import ConfigError
        from gateway.config.snapshot import load_validated
        for path in sys.argv[1:]:
            try:
                load_validated(path)
            except ConfigError as exc:
                print("\\n".join(str(p) for p in exc.problems))
    """)
    done = subprocess.run([sys.executable, "-c", probe, str(bad), str(missing)],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    expected = []
    for path in (bad, missing):
        with pytest.raises(ConfigError) as info:
            from gateway.config import load_config

            load_config(path)
        expected += [str(p) for p in info.value.problems]
    assert done.stdout.splitlines() == expected
    assert any("gateway.id" in line for line in expected)


FAKE_CHILDREN = {
    # No such module: python exits 1 with nothing on stdout.
    "gateway_no_such_child": (None, "failed: exit 1"),
    # Hangs (a FIFO for a config, a stuck import): killed after CHILD_TIMEOUT.
    "fake_child_hangs": ("import time; time.sleep(30)", "no answer within 0.5 s"),
    # The code on disk changed under a running daemon (an upgrade, then SIGHUP).
    "fake_child_newer": ('import json; print(json.dumps(["config", {"model": '
                         '"gateway.config.model:Config", "values": {"new_key": 1}}, []]))',
                         "does not fit this daemon"),
}


@pytest.mark.parametrize("child", sorted(FAKE_CHILDREN))
def test_a_child_that_fails_is_a_config_error_not_a_traceback(tmp_path: Path, child: str) -> None:
    source, expected = FAKE_CHILDREN[child]
    if source is not None:
        (tmp_path / f"{child}.py").write_text(source)
    probe = textwrap.dedent(f"""
        from gateway.config.mode import use_plain_models
        use_plain_models()
        from gateway.config import snapshot
        from gateway.config.problems import ConfigError
        snapshot.CHILD = {child!r}
        snapshot.CHILD_TIMEOUT = 0.5
        try:
            snapshot.load_validated({str(REPO / "config/simulator.yaml")!r})
        except ConfigError as exc:
            print(exc)
    """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=True, env=env)
    assert "(file): the config check (a child process) failed: " in done.stdout, done.stderr
    assert expected in done.stdout


def test_every_kind_of_value_comes_back_as_it_was() -> None:
    """The hand-over is JSON; what JSON cannot tell apart (tuple and list, int keys, a
    path and its text, bytes) is tagged, so the daemon gets the same values."""
    from pathlib import Path as P

    value = [1, 1.5, "s", None, True, (1, 2), {3: "int key", "k": [P("/x")]},
             frozenset({1}), {2}, b"\x00\xff", float("inf")]
    encoded = json.loads(json.dumps(values_of(value)))
    assert restore(encoded) == value
    assert [type(v) for v in restore(encoded)] == [type(v) for v in value]
    with pytest.raises(TypeError, match="cannot be handed over"):
        values_of(object())


_KEYS = st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.none())
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                    st.floats(allow_nan=False), st.binary(max_size=6),
                    st.builds(Path, st.text(min_size=1, max_size=8).map(lambda t: "/" + t)))
_VALUES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple),
    st.dictionaries(_KEYS, inner, max_size=4),
    st.frozensets(_LEAVES.filter(lambda v: not isinstance(v, float)), max_size=3)),
    max_leaves=12)


def _typed(value: Any) -> Any:
    """`value` with every container's type spelled out: `==` alone takes (1,) == [1]
    as different but 1 == 1.0 == True as equal."""
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_typed(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, frozenset | set):
        return (type(value).__name__, sorted(map(repr, value)))
    return (type(value).__name__, value)


@given(_VALUES)
def test_any_config_value_crosses_the_json_hand_over_unchanged(value: Any) -> None:
    """Hypothesis: whatever a model field may hold comes back with the same types."""
    back = restore(json.loads(json.dumps(values_of(value))))
    assert _typed(back) == _typed(value)


def test_every_documented_config_rebuilds_equal_from_its_values(tmp_path: Path) -> None:
    """The hand-over's values build models equal to the validated ones (here with
    pydantic's classes, which validate them again on the way)."""
    from gateway.config import load_config

    for path in _full_configs(tmp_path):
        cfg = load_config(path)
        assert restore(json.loads(json.dumps(values_of(cfg)))) == cfg, path.read_text()


class _Point(BaseModel):
    x: int = Field(default=1, description="x")
    y: list[int] = Field(default_factory=list)
    label: str = "p"


class _Point3(_Point):
    z: float = 0.0


def test_plain_models_are_frozen_records_like_pydantics() -> None:
    p = _Point(x=2)
    assert (p.x, p.y, p.label) == (2, [], "p")
    assert list(_Point3.model_fields) == ["x", "y", "label", "z"]
    assert _Point3.model_fields["x"].default == 1
    with pytest.raises(AttributeError, match="frozen"):
        p.x = 3  # type: ignore[misc]
    q = p.model_copy(update={"label": "q"})
    assert (q.x, q.label, p.label) == (2, "q", "p")
    assert _Point(x=2) == _Point(x=2) != _Point(x=3)
    assert _Point3(x=2) != _Point(x=2)  # another class: never equal, as in pydantic
    assert hash(_Point3(x=2, y=())) == hash(_Point3(x=2, y=()))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no field w"):
        _Point(w=1)


def test_the_running_daemon_never_loads_pydantic(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = write_config(tmp_path / "c.yaml", sim_header("plain", broker.port, tmp_path)
                       + tmp102_devices(["t0"], "200ms"))
    sub = Subscriber(broker.port, "gateway/plain/t0").start()
    gw = GatewayProcess(cfg, tmp_path / "gw.log")
    try:
        with running(gw):
            assert sub.wait_for(lambda s: s.count("gateway/plain/t0") >= 2, 60), gw.output()
            assert gw.proc is not None
            maps = Path(f"/proc/{gw.proc.pid}/maps").read_text()
            assert "_pydantic_core" not in maps, "the daemon loaded pydantic"
            assert gw.stop() == 0, gw.output()
    finally:
        sub.stop()

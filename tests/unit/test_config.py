"""Config loading: types, precedence, and one-line errors that list the valid keys."""

from dataclasses import dataclass

import pytest

from posttrain.config import build_config, format_help, load_config, option, parse_overrides, to_yaml
from posttrain.errors import ConfigError


@dataclass
class Demo:
    lr: float = option(1e-3, "learning rate")
    steps: int = option(10, "steps")
    name: str | None = option(None, "a name")
    flag: bool = option(False, "a flag")
    targets: list[str] = option(["q_proj"], "modules")
    mode: str = option("a", "mode", choices=("a", "b"))


def test_defaults_yaml_and_overrides_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.5\nsteps: 3\n")
    cfg = load_config(Demo, str(path), ["steps=7", "flag=true", "targets=[a, b]"], preset={"lr": 9.0, "name": "p"})
    assert (cfg.lr, cfg.steps, cfg.flag, cfg.targets, cfg.name) == (0.5, 7, True, ["a", "b"], "p")


def test_scientific_notation_and_comma_lists():
    cfg = build_config(Demo, parse_overrides(["lr=1e-4", "targets=q_proj,v_proj", "name=none"]))
    assert cfg.lr == 1e-4 and cfg.targets == ["q_proj", "v_proj"] and cfg.name is None


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as err:
        build_config(Demo, {"step": 3})
    msg = str(err.value)
    assert "unknown config key 'step'" in msg and "did you mean 'steps'" in msg
    assert "valid keys: lr, steps, name, flag, targets, mode" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("key,value,expected", [
    ("steps", "ten", "expected an integer"),
    ("steps", 2.5, "expected an integer"),
    ("lr", "fast", "expected a number"),
    ("flag", "maybe", "expected true or false"),
    ("mode", "c", "expected one of a, b"),
    ("targets", 3, "expected a list"),
])
def test_wrong_type_is_one_line(key, value, expected):
    with pytest.raises(ConfigError) as err:
        build_config(Demo, {key: value})
    assert expected in str(err.value) and key in str(err.value)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Demo, str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Demo, str(bad))
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])


def test_help_lists_every_option_with_default_and_meaning():
    text = format_help(Demo)
    for name in ("lr", "steps", "name", "flag", "targets", "mode"):
        assert f"  {name} (" in text
    assert "default: 0.001" in text and "learning rate" in text and "a | b" in text


def test_yaml_round_trip():
    cfg = build_config(Demo, {"steps": 4})
    import yaml

    assert build_config(Demo, yaml.safe_load(to_yaml(cfg))) == cfg

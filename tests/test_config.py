"""Tests of blocksim.config: schema, validation messages, dotted overrides, TOML round trips."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from blocksim.config import (
    SECTIONS,
    Config,
    load_config,
    parse_direction,
    parse_overrides,
    schema_markdown,
)
from blocksim.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
RUN_CONFIGS = sorted(p for p in (ROOT / "runs").glob("*.toml") if not p.name.startswith("sweep"))


def test_defaults_are_valid_and_round_trip():
    cfg = load_config({})
    assert isinstance(cfg, Config)
    assert load_config(cfg.to_toml()) == cfg
    assert cfg.n_steps == 3
    assert cfg.members == 8


def test_full_config_round_trips():
    text = """
[model]
block = "ttls"
k = 2
delta0_min = 0.01
mb_bare = 1.4
cl_over_ct = 2.01
coupling = 0.003
form = "joffrin-levelut"
[lattice]
n0 = 3
[rg]
r_over_l1 = 81.0
pool_size = 40
pool_strategy = "resample"
samples = 3
min_effective_samples = 2
n_keep = 4
[solver]
method = "sector"
resonance_threshold = 0.2
include_doubles = true
[observables]
temperatures = [0.01, 0.1]
reference_temperature = 0.1
omega_points = 16
omega_min = 0.001
omega_max = 3.0
line = "lorentzian"
width = 0.25
reference_band = [0.1, 0.6]
directions = ["111", "110:1-10"]
[run]
seed = 7
spawn_key = [3, 1]
output = "out/x \\"quoted\\".h5"
"""
    cfg = load_config(text)
    assert cfg.model.levels == 4
    assert cfg.n_steps == 4  # round(log_3 81)
    assert cfg.pool_sizes() == [120] * 5  # 3 replicate pools of 40
    again = load_config(cfg.to_toml())
    assert again == cfg
    assert again.run.output == 'out/x "quoted".h5'
    assert cfg.model.block_spec() == {
        "kind": "ttls", "k": 2, "delta_max": 1.0, "delta0_min": 0.01, "delta0_max": 1.0, "gamma": 1.0,
        "mb_bare": 1.4,
    }


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=[p.stem for p in RUN_CONFIGS])
def test_shipped_run_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert load_config(cfg.to_toml()) == cfg


def test_quickstart_is_small():
    cfg = load_config(ROOT / "runs" / "quickstart.toml")
    assert cfg.rg.pool_strategy == "partition"
    assert sum(cfg.pool_sizes()[1:]) <= 2000  # super-block solves


def test_partition_pool_sizes():
    cfg = load_config({"rg": {"steps": 3, "pool_size": 5}, "lattice": {"n0": 2}})
    assert cfg.pool_sizes() == [5 * 512, 5 * 64, 5 * 8, 5]


def test_overrides_are_typed():
    cfg = load_config({}, ["rg.steps=8", "rg.pool_strategy=resample", "observables.temperatures=[0.1, 0.2]", "solver.method=sector",
                           "solver.include_doubles=true", 'run.output="out/a.h5"', "model.coupling=1e-3"])
    assert cfg.rg.steps == 8 and isinstance(cfg.rg.steps, int)
    assert cfg.observables.temperatures == (0.1, 0.2)
    assert cfg.solver.method == "sector"
    assert cfg.solver.include_doubles is True
    assert cfg.run.output == "out/a.h5"
    assert cfg.model.coupling == 1e-3


def test_overrides_dict_and_replace():
    cfg = load_config({}, {"rg.steps": 2, "lattice.n0": 3})
    assert (cfg.rg.steps, cfg.lattice.n0) == (2, 3)
    assert cfg.replace(**{"rg.steps": 1}).rg.steps == 1


def test_override_values_are_never_evaluated():
    cfg = load_config({}, ["run.output=__import__('os').getcwd()"])
    assert cfg.run.output == "__import__('os').getcwd()"
    assert parse_overrides(["rg.steps=1+1"]) == {("rg", "steps"): "1+1"}
    with pytest.raises(InputError, match="must be an integer"):
        load_config({}, ["rg.steps=1+1"])


def test_unknown_key_suggests_nearest():
    with pytest.raises(InputError, match=r"rg\.stpes: unknown key in \[rg\] \(did you mean 'steps'\?\)"):
        load_config({"rg": {"stpes": 3}})
    with pytest.raises(InputError, match=r"did you mean 'observables'"):
        load_config({"observable": {}})
    with pytest.raises(InputError, match=r"did you mean 'coupling'"):
        load_config({}, ["model.couplng=0.1"])


def test_error_messages_are_one_line_section_field_value():
    with pytest.raises(InputError) as exc:
        load_config({"model": {"coupling": -1.0}})
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("model.coupling = -1.0: must be")


def test_choices_suggest():
    with pytest.raises(InputError, match=r"model.block = 'tls': must be one of .*did you mean 'ttls'"):
        load_config({"model": {"block": "tls"}})


@pytest.mark.parametrize(
    "text, q, p",
    [
        pytest.param("100", (1, 0, 0), None, id="100"),
        pytest.param("1-10", (1, -1, 0), None, id="1-10"),
        pytest.param("110:001", (1, 1, 0), (0, 0, 1), id="110:001"),
        pytest.param("111:-110", (1, 1, 1), (-1, 1, 0), id="111:-110"),
    ],
)
def test_parse_direction(text, q, p):
    assert parse_direction(text) == (q, p)


@pytest.mark.parametrize("text", ["10", "1x0", "110:100", "000", "1--10", "110:1:1", "11-"])
def test_parse_direction_rejects(text):
    with pytest.raises(ValueError, match="must"):
        parse_direction(text)


def test_every_field_documented_with_units():
    for sec, cls in SECTIONS.items():
        assert cls.__doc__
        for f in dataclasses.fields(cls):
            assert f.metadata["doc"], f"{sec}.{f.name}"
            assert f.metadata["units"], f"{sec}.{f.name}"


def test_sections_are_frozen():
    cfg = load_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rg.steps = 4  # type: ignore[misc]


def test_docs_config_md_matches_schema():
    doc = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert schema_markdown() in doc, "docs/config.md is out of date: paste blocksim.config.schema_markdown()"


def test_load_from_path_and_missing_file(tmp_path):
    p = tmp_path / "my_run.toml"
    p.write_text("[rg]\nsteps = 2\n")
    cfg = load_config(p)
    assert cfg.name == "my_run"
    assert cfg.output_path() == Path("out") / "my_run.h5"
    assert load_config(str(p)).rg.steps == 2
    with pytest.raises(InputError, match="file not found"):
        load_config(tmp_path / "nope.toml")


FLOW_SWEEPS = sorted((ROOT / "runs" / "flows").glob("*.toml"))


@pytest.mark.parametrize("path", FLOW_SWEEPS, ids=[p.stem for p in FLOW_SWEEPS])
def test_flow_sweeps_load_and_every_task_config_is_valid(path):
    """The issue-12 flow sweeps of docs/findings.md: each task's config builds (tree runs need a fixed ω grid)."""

    from blocksim.sweep.spec import load_spec, task_config

    spec = load_spec(path)  # validates every task's config
    assert spec.tasks
    for task in spec.tasks:
        cfg = task_config(spec, task)
        if cfg.rg.pool_strategy == "tree":
            assert cfg.observables.omega_min != "auto" and cfg.observables.omega_max != "auto"
        assert cfg.model.mb_bare != cfg.model.cl_over_ct  # otherwise "toward c_l/c_t" is undecidable

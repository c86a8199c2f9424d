"""Tests of blocksim.io: writer primitives (atomic appends) and the typed reader's refusals."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from blocksim import io as bio
from blocksim.config import load_config
from blocksim.errors import InputError


def _values(p_in=16, p_out=2, n=3, n_keep=2, n_t=2, n_w=5, n_dir=2):
    rng = np.random.default_rng(0)
    v = {
        "scale_L": 1.0, "scale_L_out": 2.0, "coupling_g": 0.01,
        "omega": np.geomspace(0.1, 1, n_w), "omega_edges": np.geomspace(0.08, 1.2, n_w + 1),
        "temperature": np.array([0.02, 0.1])[:n_t],
        "mb_ratio": 1.5, "mb_ratio_err": 0.01, "mb_ratio_pool": 1.49, "mb_ratio_pool_err": 0.02,
        "n_effective": p_out, "reliable": True,
        "directions": ["100", "111"][:n_dir],
        "mb_ratio_dir": np.ones(n_dir), "mb_ratio_dir_err": np.zeros(n_dir),
        "reference_temperature": 0.02, "reference_band": np.array([0.1, 1.0]),
        "weight_tensor": rng.standard_normal((p_out, 6, 6)), "weight_l": -np.ones(p_out), "weight_t": -np.ones(p_out),
        "weight_pool_l": -np.ones(p_out), "weight_pool_t": -np.ones(p_out),
        "pool_energies": rng.random((p_in, n)), "pool_stress": rng.standard_normal((p_in, 6, n, n)),
        "members": np.arange(p_in).reshape(p_out, -1), "rotations": np.tile(np.eye(3), (p_out, 8, 1, 1)),
        "superblock_energies": rng.random((p_out, n_keep)), "superblock_stress": rng.random((p_out, 6, n_keep, n_keep)),
    }
    for name in ("im_chi_l", "im_chi_t", "re_chi_l", "re_chi_t"):
        v[name] = -rng.random((n_t, n_w))
        v[name + "_dir"] = -rng.random((n_dir, n_t, n_w))
    return v


def _diagnostics():
    """The diagnostics the summary reads, with made-up values."""
    return {"weight_kept": np.array([0.5, 0.6]), "weight_kept_mean": 0.55, "level_scale": 0.3,
            "isotropy_residual": 0.01, "pool_size": 16, "pool_distinct_ancestors": 16,
            "pool_distinct_lineages": 16, "double_in_window_count": 0}


def test_writer_refuses_names_outside_the_schema(tmp_path):
    path = tmp_path / "t.h5"
    _new(path)
    with pytest.raises(InputError, match="not in blocksim.io.schema"):
        bio.append_step(path, 0, _values(), dict(_diagnostics(), new_thing=1.0), {})
    with pytest.raises(InputError, match="dtype kind"):
        bio.append_step(path, 0, dict(_values(), members=np.zeros((2, 8))), _diagnostics(), {})


def test_summary_grows_and_is_cut_at_a_rewritten_step(tmp_path):
    path = tmp_path / "t.h5"
    _new(path)
    for k in range(3):
        bio.append_step(path, k, dict(_values(), mb_ratio=1.0 + k), _diagnostics(), {})
    bio.append_step(path, 1, dict(_values(), mb_ratio=9.0), _diagnostics(), {})
    with bio.open_trajectory(path) as tr:
        assert list(tr.summary["step"]) == [0, 1]
        assert list(tr.summary["mb_ratio"]) == [1.0, 9.0]
        assert tr.summary["mb_ratio_dir"].shape == (2, 2)


def test_schema_tables_are_consistent():
    names = [d.name for d in bio.schema.STEP]
    assert len(set(names)) == len(names)
    assert [f for f in bio.Step.__dataclass_fields__][1:len(names) + 1] == names
    for table in (bio.schema.STEP, bio.schema.DIAGNOSTICS, bio.schema.SUMMARY, bio.schema.FINAL_POOL):
        for d in table:
            assert d.dtype in ("float64", "int64", "bool", "str") and d.units and d.description, d
            assert d.accuracy.split(" ")[0] in ("exact", "first", "statistical", "step", "as", "transitions"), d


def test_docs_table_is_generated_from_the_schema():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "trajectory-format.md").read_text()
    assert bio.schema.markdown() in doc, "docs/trajectory-format.md is out of date: paste blocksim.io.schema.markdown()"


def _new(path):
    cfg = load_config({"run": {"seed": 1}})
    bio.create_file(path, {"config_toml": cfg.to_toml(), "seed_entropy": 1, "spawn_key": []}, cfg.to_dict())


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "t.h5.part"
    _new(path)
    values = _values()
    diag = _diagnostics()
    bio.append_step(path, 0, values, diag, {"elapsed_s": 0.1})
    with bio.open_trajectory(path) as tr:
        assert tr.status == "running"
        assert tr.config["run"]["seed"] == 1
        assert tr.run_config.run.seed == 1
        (step,) = tr.steps
        assert step.index == 0 and step.directions == ("100", "111")
        for key, value in values.items():
            got = getattr(step, key)
            if key == "directions":
                continue
            assert np.array_equal(np.asarray(got), np.asarray(value)), key
        assert isinstance(step.mb_ratio, float)
        assert step.diagnostics["pool_size"] == 16
        assert step.diagnostics_units["weight_kept"] == "1"
        assert step.attrs["complete"]
        assert np.array_equal(tr.summary["step"], [0])
        assert tr.summary["mb_ratio"][0] == values["mb_ratio"]
        assert tr.summary["level_scale"][0] == diag["level_scale"]
        assert tr.summary["im_chi_l_ref"][0] == np.mean(values["weight_l"])
        assert tr.final_pool is None
    with h5py.File(path, "r") as f:
        bad = []
        f.visititems(lambda n, o: bad.append(n) if isinstance(o, h5py.Dataset) and not {"units", "description"}
                     <= set(o.attrs) else None)
        assert bad == []


def test_incomplete_step_is_not_listed(tmp_path):
    path = tmp_path / "t.h5"
    _new(path)
    bio.append_step(path, 0, _values(), _diagnostics(), {})
    with h5py.File(path, "a") as f:
        f["steps"].create_group("step_1")  # a step without complete=True (as if killed mid-write)
    with bio.open_trajectory(path) as tr:
        assert tr.complete_indices() == [0]
        assert [s.index for s in tr.steps] == [0]
        with pytest.raises(InputError, match="not a complete step"):
            tr.step(1)


def test_failed_append_leaves_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "t.h5.part"
    _new(path)
    bio.append_step(path, 0, _values(), _diagnostics(), {})
    before = path.read_bytes()
    calls = {"n": 0}
    real_put = bio.put

    def flaky_put(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # a signal arriving mid-write
        return real_put(*args, **kwargs)

    monkeypatch.setattr(bio.trajectory, "put", flaky_put)
    with pytest.raises(KeyboardInterrupt):
        bio.append_step(path, 1, _values(), _diagnostics(), {})
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".tmp").exists()
    with bio.open_trajectory(path) as tr:
        assert tr.complete_indices() == [0]


def test_missing_dataset_rejected(tmp_path):
    path = tmp_path / "t.h5"
    _new(path)
    values = _values()
    del values["members"]
    with pytest.raises(InputError, match="members"):
        bio.append_step(path, 0, values, _diagnostics(), {})


def test_reader_refuses_foreign_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        bio.open_trajectory(tmp_path / "none.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an HDF5 file"):
        bio.open_trajectory(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(InputError, match="format = 'something-else'"):
        bio.open_trajectory(other)
    newer = tmp_path / "newer.h5"
    _new(newer)
    bio.update_file(newer, attrs={"format_version": bio.FORMAT_VERSION + 1})
    with pytest.raises(InputError, match="newer"):
        bio.open_trajectory(newer)


def test_update_file_sets_status_and_final_pool(tmp_path):
    path = tmp_path / "t.h5"
    _new(path)
    bio.update_file(path, attrs={"status": "complete"},
                    final_pool={"energies": np.zeros((2, 3)), "stress": np.zeros((2, 6, 3, 3)),
                                "lineage": np.arange(2)})
    with bio.open_trajectory(path) as tr:
        assert tr.status == "complete"
        assert tr.final_pool[0].shape == (2, 3)


def test_part_path():
    assert str(bio.part_path("out/a.h5")) == "out/a.h5.part"

"""HDF5 trajectory files (BRIEF §4): the writer's primitives and the typed reader.

File layout (format ``"blocksim-trajectory"``, :data:`FORMAT_VERSION`; full description with every
dataset in ``docs/trajectory-format.md``)::

    /                       root attributes: format, format_version, blocksim_version, git_commit,
                            created, config_toml, seed_entropy, spawn_key, status, ...
    /parameters/<section>   the resolved config, one group per TOML section, values as attributes
    /steps/step_K/          one group per coarse-graining step K = 0, 1, ...; attribute complete=True
                            is written last (see STEP_DATASETS for the datasets)
    /final_pool/            energies, stress of the truncated super blocks of the last step
    /summary/               per-step arrays of complete steps, for quick plotting

Every dataset has ``units`` and ``description`` attributes, and a ``checksum`` attribute
(``"sha256:<hex>"`` of its values, :func:`checksum`) that the reader verifies on every read: a value
changed on disk is reported as an InputError instead of being used (also by ``--resume``).

Crash safety. A run writes to ``OUT.h5.part``. Each step is appended by copying the ``.part`` file
to a uniquely named ``.OUT.h5.part.<pid>.<random>.tmp``, writing the step there, closing it and renaming it over the ``.part`` file
(:func:`append_step`). At every instant the ``.part`` file is therefore a closed, consistent HDF5
file holding every completed step, whatever kills the process. A finished run sets
``status = "complete"`` and renames the ``.part`` file to ``OUT.h5``; an existing ``OUT.h5`` is only
ever replaced by that rename.

Units: energies, ω, T in E*; stresses in T*; lengths in L_1; χ in T*²/E* per super-block volume.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import uuid
import shutil
import subprocess
from dataclasses import field, make_dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from . import schema

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "STATUSES",
    "STEP_DATASETS",
    "Step",
    "Trajectory",
    "open_trajectory",
    "part_path",
    "put",
    "create_file",
    "append_step",
    "update_file",
    "git_commit",
    "now",
    "checksum",
]

FORMAT = "blocksim-trajectory"
FORMAT_VERSION = 1
STATUSES = ("running", "complete", "failed")
#: Arrays with more elements than this are stored gzip-compressed (lossless, deterministic).
_COMPRESS_ABOVE = 1 << 16

#: Datasets of ``/steps/step_K`` (the rows of :data:`blocksim.io.schema.STEP`).
STEP_DATASETS = schema.STEP
_STEP = schema.by_name(schema.STEP)
_DIAGNOSTICS = schema.by_name(schema.DIAGNOSTICS)
_FINAL_POOL = schema.by_name(schema.FINAL_POOL)
#: Accepted numpy dtype kinds per schema dtype (the writer refuses anything else).
_KINDS = {"float64": "f", "int64": "iu", "bool": "bu", "str": "OSU"}


# --------------------------------------------------------------------------------------------
# Writing primitives
# --------------------------------------------------------------------------------------------
def now() -> str:
    """UTC timestamp, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str:
    """Commit of the blocksim source tree if it is a git checkout, else ``"unknown"``."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else "unknown"


def part_path(path) -> Path:
    """The in-progress name of an output file: ``OUT.h5`` → ``OUT.h5.part``."""
    path = Path(path)
    return path.with_name(path.name + ".part")


def _tmp_name(path: Path) -> Path:
    """A unique temporary name beside ``path`` (hidden; pid and a random part, so writers never collide)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def checksum(values) -> str:
    """``"sha256:<hex>"`` of a dataset's values: its shape and its bytes (numbers little-endian; strings
    as length-prefixed UTF-8). The same for the array given to :func:`put` and the one read back."""
    arr = np.asarray(values)
    h = hashlib.sha256(repr(tuple(arr.shape)).encode())
    if arr.dtype.kind in "OSU":
        for item in arr.ravel():
            b = item if isinstance(item, bytes) else str(item).encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    else:
        h.update(arr.dtype.kind.encode())
        h.update(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())
    return "sha256:" + h.hexdigest()


def _attr_value(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, str) for v in value):
            return np.array(value, dtype=h5py.string_dtype())
        return np.asarray(value, dtype=np.int64 if all(isinstance(v, int) for v in value) else float)
    return value


def put(group: h5py.Group, name: str, data, units: str, description: str) -> h5py.Dataset:
    """Create dataset ``name`` (intermediate groups included) with ``units`` and ``description``."""
    if isinstance(data, (list, tuple)) and data and all(isinstance(v, str) for v in data):
        arr = np.array(data, dtype=h5py.string_dtype())
    elif isinstance(data, (list, tuple)) and not data:
        arr = np.array([], dtype=h5py.string_dtype()) if name.endswith("directions") else np.array([])
    else:
        arr = np.asarray(data)
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
    kwargs = {}
    if arr.dtype.kind in "fiu" and arr.size > _COMPRESS_ABOVE:
        kwargs = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if name in group:
        del group[name]
    ds = group.create_dataset(name, data=arr, **kwargs)
    ds.attrs["units"] = units
    ds.attrs["description"] = description
    ds.attrs["checksum"] = checksum(arr)
    return ds


def create_file(path, root_attrs: dict, parameters: dict) -> None:
    """Create a new trajectory at ``path`` (replacing any file there) with status "running".

    ``root_attrs`` are written as root attributes (format, format_version and status are added);
    ``parameters`` is the nested config dict ``{section: {key: value}}`` written to /parameters.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            for key, value in root_attrs.items():
                f.attrs[key] = _attr_value(value)
            f.attrs["stream_keys"] = schema.STREAM_KEYS
            f.attrs["status"] = "running"
            par = f.create_group("parameters")
            par.attrs["description"] = "the resolved config (config_toml), one group per section"
            for sec, values in parameters.items():
                g = par.create_group(sec)
                for key, value in values.items():
                    g.attrs[key] = _attr_value(value)
            f.create_group("steps")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_edit(path, edit) -> None:
    """Copy ``path`` to a temporary file, apply ``edit(h5file)``, close, rename over ``path``."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            edit(f)
            f.flush()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _put_row(group: h5py.Group, row: schema.Dataset, data) -> h5py.Dataset:
    """Write ``data`` as the schema row ``row`` (its path, units and description; dtype checked)."""
    if isinstance(data, (list, tuple)):
        kind = "O" if all(isinstance(v, str) for v in data) else np.asarray(data).dtype.kind
    else:
        kind = np.asarray(data).dtype.kind
    if kind not in _KINDS[row.dtype]:
        raise InputError(f"dataset {row.name!r}: dtype kind {kind!r} does not match the schema's {row.dtype}")
    return put(group, row.path, data, row.units, row.description)


def _known(table: dict, names, what: str) -> None:
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise InputError(f"{what} {unknown}: not in blocksim.io.schema (add a row there first)")


def _write_summary(f: h5py.File, step) -> None:
    """Append the :data:`schema.SUMMARY` row of ``step`` to /summary (rows of later steps are dropped)."""
    row = schema.summary_row(step)
    old = f.get("summary")
    keep = None
    if old is not None and "step" in old:
        keep = np.asarray(old["step"][()]) < step.index
    columns = {}
    for d in schema.SUMMARY:
        if d.name == "directions":
            columns[d.name] = list(step.directions)
            continue
        new = np.array([row[d.name]])
        if keep is not None and d.path in old:
            new = np.concatenate((old[d.path][()][keep], new))
        columns[d.name] = new
    if old is not None:
        del f["summary"]
    g = f.create_group("summary")
    g.attrs["description"] = "per-step arrays of the complete steps (index = step)"
    for d in schema.SUMMARY:
        _put_row(g, d, columns[d.name])


def append_step(path, index: int, values: dict, diagnostics: dict, attrs: dict) -> None:
    """Append ``/steps/step_{index}`` atomically (copy, write, rename; see the module docstring).

    Parameters
    ----------
    path : path-like
        The ``.part`` file (created by :func:`create_file`).
    index : int
        Step index K.
    values : dict
        Every field of :data:`blocksim.io.schema.STEP` → its array or scalar.
    diagnostics : dict
        Diagnostic name (a row of :data:`blocksim.io.schema.DIAGNOSTICS`) → array or scalar,
        written under ``diagnostics/``.
    attrs : dict
        Extra step attributes (``elapsed_s``, ``finished``).

    The /summary row of the step (:func:`blocksim.io.schema.summary_row`) is appended, and the step
    attribute ``complete = True`` is written last. Units and descriptions come from the schema;
    a name the schema does not know raises :class:`InputError`.
    """
    missing = [d.name for d in STEP_DATASETS if d.name not in values]
    if missing:
        raise InputError(f"step {index}: missing datasets {missing}")
    _known(_STEP, values, f"step {index}: datasets")
    _known(_DIAGNOSTICS, diagnostics, f"step {index}: diagnostics")
    step = Step(index=index, diagnostics=dict(diagnostics), **values)

    def edit(f):
        steps = f.require_group("steps")
        name = f"step_{index}"
        if name in steps:
            del steps[name]
        g = steps.create_group(name)
        g.attrs["index"] = index
        for row in STEP_DATASETS:
            _put_row(g, row, values[row.name])
        diag = g.create_group("diagnostics") if diagnostics else None
        for name_, data in diagnostics.items():
            _put_row(diag, _DIAGNOSTICS[name_], data)
        for key, value in attrs.items():
            g.attrs[key] = _attr_value(value)
        _write_summary(f, step)
        f.flush()
        g.attrs["complete"] = True

    _atomic_edit(path, edit)


def update_file(path, attrs: dict | None = None, final_pool: dict | None = None) -> None:
    """Atomically set root attributes and/or write ``/final_pool`` (``{name: array}``, :data:`schema.FINAL_POOL`)."""
    _known(_FINAL_POOL, final_pool or {}, "final_pool")

    def edit(f):
        if final_pool:
            g = f.require_group("final_pool")
            for name, data in final_pool.items():
                _put_row(g, _FINAL_POOL[name], data)
        for key, value in (attrs or {}).items():
            f.attrs[key] = _attr_value(value)

    _atomic_edit(path, edit)


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------
def _field_type(row: schema.Dataset):
    if row.dtype == "str":
        return tuple
    return float if row.shape == "()" and row.dtype == "float64" else np.ndarray


#: One complete coarse-graining step, generated from :data:`blocksim.io.schema.STEP`.
Step = make_dataclass(
    "Step",
    [("index", int)]
    + [(row.name, _field_type(row)) for row in schema.STEP]
    + [(name, dict, field(default_factory=dict)) for name in ("diagnostics", "diagnostics_units", "attrs")],
    frozen=True,
)
Step.__module__ = __name__
Step.__doc__ = """One complete coarse-graining step of a trajectory (fields: the rows of :data:`blocksim.io.schema.STEP`).

Scalars are Python floats; ``directions`` is a tuple of strings; ``diagnostics`` maps each
``diagnostics/*`` name to its value (arrays, or floats for scalars); ``diagnostics_units`` to its
units; ``attrs`` holds the step attributes. The response arrays and ``mb_ratio`` describe the super
blocks built in this step (scale ``scale_L_out``); ``pool_*`` are the blocks that entered it
(scale ``scale_L``). Optional datasets missing from a file are None.
"""


def _corrupt(path, what: str, exc: BaseException | None = None) -> InputError:
    detail = f" ({' '.join(str(exc).split())})" if exc is not None else ""
    return InputError(f"trajectory = {str(path)!r}: {what}{detail}; the file is damaged (truncated, "
                      "overwritten or edited)")


def _read(ds: h5py.Dataset, path=""):
    """The values of ``ds`` after checking its ``checksum`` attribute (InputError when it differs or the
    data cannot be read)."""
    try:
        raw = ds[()]
        expected = ds.attrs.get("checksum")
    except (OSError, RuntimeError, KeyError) as exc:
        raise _corrupt(path, f"dataset {ds.name!r} cannot be read", exc) from None
    if expected is not None:
        expected = expected.decode() if isinstance(expected, bytes) else str(expected)
        if checksum(raw) != expected:
            raise _corrupt(path, f"dataset {ds.name!r} does not match its checksum")
    if ds.dtype.kind in ("O", "S"):
        return tuple(x.decode() if isinstance(x, bytes) else str(x) for x in np.ravel(raw))
    if np.ndim(raw) == 0:
        return raw.item() if hasattr(raw, "item") else raw
    return raw


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in ("O", "S"):
            return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in value)
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


class Trajectory:
    """An open trajectory file (use :func:`open_trajectory`; a context manager).

    Attributes: ``path``, ``attrs`` (root attributes as plain Python values), ``status``,
    ``format_version``, ``config`` (config_toml parsed into a nested dict), ``run_config`` (the same as a
    validated :class:`blocksim.config.Config`), ``steps`` (list of
    complete :class:`Step`, by index), ``summary`` (dict of per-step arrays), ``final_pool``
    (``(energies, stress)`` of the last truncated super blocks, or None while running).
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"trajectory = {str(path)!r}: file not found")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError:
            raise InputError(f"trajectory = {str(path)!r}: not an HDF5 file (or unreadable)") from None
        try:
            try:
                attrs = {k: _plain(v) for k, v in self._file.attrs.items()}
            except (OSError, RuntimeError, KeyError) as exc:
                raise _corrupt(path, "the root attributes cannot be read", exc) from None
            fmt = attrs.get("format")
            if fmt != FORMAT:
                raise InputError(f"trajectory = {str(path)!r}: format = {fmt!r}, must be {FORMAT!r}")
            version = attrs.get("format_version")
            if not isinstance(version, int) or version < 1:
                raise InputError(f"trajectory = {str(path)!r}: format_version = {version!r}, must be an integer ≥ 1")
            if version > FORMAT_VERSION:
                raise InputError(
                    f"trajectory = {str(path)!r}: format_version = {version} is newer than this blocksim "
                    f"reads (≤ {FORMAT_VERSION}); upgrade blocksim"
                )
        except BaseException:
            self._file.close()
            raise
        self.attrs = attrs
        self.format_version = version
        self._steps = None
        self._config = None

    # context manager -------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the HDF5 file (the loaded steps stay usable)."""
        if self._file:
            self._file.close()

    # typed access ----------------------------------------------------------------------
    @property
    def status(self) -> str:
        """"running" (in progress or killed), "complete" or "failed" (see ``attrs['failure_reason']``)."""
        return self.attrs.get("status", "unknown")

    @property
    def config(self) -> dict:
        """The resolved config as a nested dict ``{section: {key: value}}`` (``config_toml`` parsed)."""
        import tomllib

        text = self._config_toml()
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _corrupt(self.path, "root attribute config_toml is not valid TOML", exc) from None

    def _config_toml(self) -> str:
        text = self.attrs.get("config_toml")
        if not isinstance(text, str):
            raise InputError(f"trajectory = {str(self.path)!r}: lacks the root attribute 'config_toml' (the "
                             "resolved run config, BRIEF §4); not a complete blocksim trajectory")
        return text

    @property
    def run_config(self):
        """The resolved run config as a validated :class:`blocksim.config.Config`."""
        if self._config is None:
            from ..config import load_config

            self._config = load_config(self.config)
        return self._config

    def complete_indices(self) -> list[int]:
        """Indices of the steps marked complete, ascending."""
        out = []
        try:
            steps = self._file.get("steps")
            if steps is None:
                return out
            for name, g in steps.items():
                if name.startswith("step_") and name[5:].isdigit() and bool(g.attrs.get("complete", False)):
                    out.append(int(name[5:]))
        except (OSError, RuntimeError, KeyError) as exc:
            raise _corrupt(self.path, "the step index cannot be read", exc) from None
        return sorted(out)

    def step(self, index: int) -> Step:
        """Load complete step ``index`` (every dataset checked against its checksum)."""
        try:
            return self._step(index)
        except (OSError, RuntimeError, KeyError) as exc:
            raise _corrupt(self.path, f"step_{index} cannot be read", exc) from None

    def _step(self, index: int) -> Step:
        g = self._file.get(f"steps/step_{index}")
        if g is None or not bool(g.attrs.get("complete", False)):
            raise InputError(f"step = {index}: not a complete step of {str(self.path)!r}")
        kwargs = {}
        for row in STEP_DATASETS:
            fld, rel = row.name, row.path
            if rel not in g:
                # BRIEF §4 names the required datasets; the others are extras of this writer
                if row.required:
                    raise InputError(
                        f"{str(self.path)!r}: step_{index} lacks the required dataset {rel!r} (BRIEF §4)"
                    )
                kwargs[fld] = None
                continue
            value = _read(g[rel], self.path)
            kwargs[fld] = tuple(value) if fld == "directions" and isinstance(value, tuple) else value
        diag, diag_units = {}, {}
        if "diagnostics" in g:
            for name, ds in g["diagnostics"].items():
                diag[name] = _read(ds, self.path)
                diag_units[name] = _plain(ds.attrs.get("units", ""))
        attrs = {k: _plain(v) for k, v in g.attrs.items()}
        return Step(index=int(index), diagnostics=diag, diagnostics_units=diag_units, attrs=attrs, **kwargs)

    @property
    def steps(self) -> list[Step]:
        """The complete steps, ascending (loaded on first access)."""
        if self._steps is None:
            self._steps = [self.step(i) for i in self.complete_indices()]
        return self._steps

    @property
    def summary(self) -> dict:
        """Per-step arrays of /summary (step, scale_L, mb_ratio, mb_ratio_err, ...)."""
        try:
            g = self._file.get("summary")
            return {} if g is None else {name: _read(ds, self.path) for name, ds in g.items()}
        except (OSError, RuntimeError, KeyError) as exc:
            raise _corrupt(self.path, "/summary cannot be read", exc) from None

    @property
    def final_pool(self):
        """``(energies [P, n_keep], stress [P, 6, n_keep, n_keep])`` after the last step, or None."""
        try:
            g = self._file.get("final_pool")
            if g is None:
                return None
            return _read(g["energies"], self.path), _read(g["stress"], self.path)
        except (OSError, RuntimeError, KeyError) as exc:
            raise _corrupt(self.path, "/final_pool cannot be read", exc) from None

    def __repr__(self) -> str:
        return f"Trajectory({str(self.path)!r}, status={self.status!r}, steps={self.complete_indices()})"


def open_trajectory(path) -> Trajectory:
    """Open a blocksim trajectory for reading: ``with open_trajectory("out/x.h5") as tr: tr.steps``.

    Refuses (InputError) a missing file, a non-HDF5 file, another format or a newer format_version;
    reading a damaged dataset (unreadable, or not matching its ``checksum``) raises InputError too.
    A ``.part`` file of a running or killed run opens too; its ``steps`` are the complete ones.
    """
    return Trajectory(path)

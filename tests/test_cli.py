"""The climgen command line: through its entry point in this process (the ``climgen_cli``
fixture), and as a real subprocess where a fresh interpreter matters (the module run as
``python -m climgen.cli``, a traceback on --debug)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from climgen import pipeline
from climgen.testing import make_dataset


def climgen(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "climgen.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_synthesize_writes_the_same_values_as_the_accessor(hsurf_coarse_file, tmp_path):
    output = tmp_path / "refined.nc"
    result = climgen("synthesize", hsurf_coarse_file, output, "--factor", 4, "--seed", 11)
    assert result.returncode == 0, result.stderr
    assert "refinement depth" in result.stdout
    assert "predicted gain, tolerance 0.015" in result.stdout  # the default policy
    with xr.open_dataset(hsurf_coarse_file) as coarse, xr.open_dataset(output) as written:
        expected = pipeline.synthesize(coarse, factor=4, seed=11)
        np.testing.assert_array_equal(written["HSURF"].values, expected["HSURF"].values)
        np.testing.assert_array_equal(written["refinement_depth"].values, expected["refinement_depth"].values)
        assert written.attrs["history"].startswith(written.attrs["history"][:20])
        assert "climgen synthesize" in written.attrs["history"].splitlines()[0]
    assert not list(tmp_path.glob(".*partial*"))


def test_same_seed_gives_bit_identical_files(hsurf_coarse_file, tmp_path, climgen_cli):
    first, second = tmp_path / "a.nc", tmp_path / "b.nc"
    for path in (first, second):
        assert climgen_cli("synthesize", hsurf_coarse_file, path, "--factor", 4, "--seed", 2).returncode == 0
    with xr.open_dataset(first) as a, xr.open_dataset(second) as b:
        np.testing.assert_array_equal(a["HSURF"].values, b["HSURF"].values)


def test_zarr_output_uniform_and_members(hsurf_coarse_file, tmp_path, climgen_cli):
    output = tmp_path / "refined.zarr"
    result = climgen_cli("synthesize", hsurf_coarse_file, output, "--factor", 2, "--uniform", "--members", 2)
    assert result.returncode == 0, result.stderr
    with xr.open_zarr(output) as ds:
        assert ds["HSURF"].dims == ("realization", "time", "rlat", "rlon")
        assert int(ds["refinement_depth"].min()) == 1
        assert ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3"


def test_covariate_option(tmp_path, climgen_cli):
    from climgen.testing import make_dataset

    coarse = make_dataset("latlon", shape=(12, 16))
    covariate = make_dataset("latlon", shape=(48, 64), name="orog")
    coarse.to_netcdf(tmp_path / "in.nc")
    covariate.to_netcdf(tmp_path / "orog.nc")
    result = climgen_cli(
        "synthesize",
        tmp_path / "in.nc",
        tmp_path / "out.nc",
        "--covariate",
        f"elevation={tmp_path / 'orog.nc'}:orog",
        "--attribute",
        "creator_name=A. Scientist",
        "--attribute",
        "license=CC-BY-4.0",
    )
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert '"covariates": ["elevation"]' in out.attrs["climgen_provenance"]
        assert out.attrs["creator_name"] == "A. Scientist" and out.attrs["license"] == "CC-BY-4.0"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["synthesize", "missing.nc", "out.nc"], "input not found"),
        (["synthesize", "{input}", "out.nc", "--factor", "3"], "factor must be one of"),
        (["synthesize", "{input}", "out.txt"], "must end in .nc or .zarr"),
        (["synthesize", "{input}", "out.nc", "--factor", "four"], "Invalid value for '--factor'"),
        (["synthesize", "{input}", "out.nc", "--variables", "pr"], "variables not found"),
        (["synthesize", "{input}", "out.nc", "--covariate", "elevation"], "NAME=FILE"),
        (["synthesize", "{input}", "out.nc", "--model", "weights.pt"], "pickle"),
        (["synthesize", "{input}", "out.nc", "--budget", "2"], "budget must be in"),
        (["synthesize", "{input}", "out.nc", "--bounds", "HSURF=0"], "NAME=LOWER:UPPER"),
        (["synthesize", "{input}", "out.nc", "--attribute", "creator_name"], "KEY=VALUE"),
        (["synthesize", "{input}", "out.nc", "--attribute", "climgen_model=mine"], "climgen's to write"),
        (["synthesize", "{input}", "out.nc", "--bounds", "HSURF=5:1"], "lower must be below upper"),
        (["synthesize", "{input}", "out.nc", "--bounds", "pr=0:"], "not refined here"),
        (["synthesize"], "Missing argument"),
        (["synthesize", "{input}", "out.nc", "--covariate", "e={input}", "--covariate", "e={input}"], "given twice"),
        (["synthesize", "{input}", "out.nc", "--scheduler", "nonsense"], "dask scheduler's address"),
        (["demo", "--out", "demo", "--factor", "3"], "factor must be one of"),
        (["benchmark", "--truth", "{input}", "--out", "bench", "--members", "0"], "members must be at least 2"),
        (["check", "missing.nc"], "file not found"),
        (["train", "missing.yaml"], "cannot read recipe"),
        (["train", "{recipe}", "--precision", "float16"], "precision must be float32 or bfloat16"),
    ],
)
def test_user_errors_are_one_line_with_nothing_written(arguments, message, hsurf_coarse_file, tmp_path, climgen_cli):
    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "train-default.yaml")
    arguments = [a.replace("{input}", str(hsurf_coarse_file)).replace("{recipe}", recipe) for a in arguments]
    result = climgen_cli(*arguments, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.nc").exists() and not list(tmp_path.glob(".*partial*"))
    assert not (tmp_path / "demo").exists() and not (tmp_path / "bench").exists()


def test_existing_output_is_kept_without_overwrite(hsurf_coarse_file, tmp_path, climgen_cli):
    output = tmp_path / "out.nc"
    output.write_text("precious")
    result = climgen_cli("synthesize", hsurf_coarse_file, output)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert output.read_text() == "precious"
    assert climgen_cli("synthesize", hsurf_coarse_file, output, "--overwrite").returncode == 0
    with xr.open_dataset(output) as ds:
        assert "HSURF" in ds


def test_an_output_of_no_job_is_refused_before_planning_reads_the_input(hsurf_coarse_file, tmp_path, climgen_cli, monkeypatch):
    """An existing output was refused only after planning (the self-tests read the whole input:
    20 s on a large one); a file that is no job's output is refused at once."""
    from climgen import streaming

    def no_planning(*args, **kwargs):
        raise AssertionError("planned before refusing the output")

    output = tmp_path / "out.nc"
    output.write_text("precious")
    monkeypatch.setattr(streaming, "prepare_job", no_planning)
    result = climgen_cli("synthesize", hsurf_coarse_file, output)
    assert result.returncode == 2 and "--overwrite" in result.stderr, result.stderr
    assert output.read_text() == "precious"


def test_the_input_itself_is_never_the_output_even_with_overwrite(hsurf_coarse_file, tmp_path, climgen_cli):
    """`--overwrite` with the input as the output replaced the coarse input with its refinement."""
    import shutil

    folder = tmp_path / "work"
    folder.mkdir()
    source = folder / "coarse.nc"
    shutil.copy(hsurf_coarse_file, source)
    original = source.read_bytes()
    (folder / "link.nc").symlink_to(source)
    for command in (["synthesize", source, source], ["synthesize", source, "./link.nc"], ["coarsen", "coarse.nc", source]):
        result = climgen_cli(*command, "--factor", "2", "--overwrite", cwd=folder)
        assert result.returncode == 2 and "would replace the data it is made from" in result.stderr, result.stderr
    assert source.read_bytes() == original
    assert sorted(path.name for path in folder.iterdir()) == ["coarse.nc", "link.nc"]  # nothing left behind


def test_usage_errors_point_to_the_command_s_own_help(climgen_cli):
    result = climgen_cli("synthesize", "in.nc", "out.nc", "--factr", "2")
    assert result.returncode == 2 and "(see climgen synthesize --help)" in result.stderr
    bare = climgen_cli()  # the help, and no empty error line after it
    assert "Usage" in bare.stdout and "error" not in bare.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = climgen("--debug", "synthesize", "missing.nc", "out.nc", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_coarsen_command_inverts_the_grid(tmp_path, climgen_cli):
    from pathlib import Path

    truth = Path(__file__).parent / "data" / "hsurf_east_africa.nc"
    assert climgen_cli("coarsen", truth, tmp_path / "c.nc", "--factor", 4).returncode == 0
    assert climgen_cli("synthesize", tmp_path / "c.nc", tmp_path / "f.nc", "--factor", 4).returncode == 0
    with xr.open_dataset(truth) as t, xr.open_dataset(tmp_path / "f.nc") as f:
        np.testing.assert_allclose(f["rlat"], t["rlat"], atol=1e-5)
        np.testing.assert_allclose(f["rlon"], t["rlon"], atol=1e-5)


def test_climgen_warnings_are_one_line_each(tmp_path, climgen_cli):
    from climgen.testing import make_dataset

    ds = make_dataset("latlon", shape=(8, 8))
    ds["zonal_mean"] = ("lat", ds["tas"].mean("lon").values)
    ds.to_netcdf(tmp_path / "in.nc")
    result = climgen_cli("synthesize", tmp_path / "in.nc", tmp_path / "out.nc", "--factor", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "climgen: warning: variables ['zonal_mean'] lie along only one of (lat, lon)" in result.stderr
    assert "warnings.warn" not in result.stderr and "InputWarning" not in result.stderr


def test_a_time_axis_no_calendar_decodes_is_carried_as_its_numbers(tmp_path, climgen_cli):
    """'months since' in a standard calendar cannot become dates: the file is refined, with its
    time axis as written and one line of warning, where it used to be refused."""
    ds = make_dataset("latlon", shape=(16, 16), times=3)
    ds["time"] = ("time", np.arange(3.0), {"units": "months since 2000-01-01", "calendar": "standard"})
    ds.to_netcdf(tmp_path / "months.nc")
    result = climgen_cli("synthesize", tmp_path / "months.nc", tmp_path / "fine.nc", "--factor", 2, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("\n") == 1 and "unable to decode time units 'months since 2000-01-01'" in result.stderr
    with xr.open_dataset(tmp_path / "fine.nc", decode_times=False) as fine:
        assert fine["time"].values.tolist() == [0.0, 1.0, 2.0] and fine["time"].attrs["units"] == "months since 2000-01-01"
        assert fine["tas"].shape == (3, 32, 32)


def test_bounds_given_twice_for_one_variable_say_so():
    from climgen.cli.options import parse_bounds
    from climgen.errors import ConfigError

    with pytest.raises(ConfigError, match="given twice"):
        parse_bounds(["pr=0:", "pr=1:"])


def test_coarsen_says_which_rows_and_columns_it_leaves_out(tmp_path, climgen_cli):
    make_dataset("latlon", shape=(18, 21)).to_netcdf(tmp_path / "odd.nc")
    result = climgen_cli("coarsen", tmp_path / "odd.nc", tmp_path / "coarse.nc", "--factor", 4)
    assert result.returncode == 0, result.stderr
    assert "left out, as they do not fill a 4 x 4 block: the last 2 rows (lat) and the last 1 column (lon)" in result.stdout


def test_a_coarsened_climgen_output_is_a_new_coarse_field(tmp_path, climgen_cli):
    """Coarsening a refined output leaves out the refinement's maps and record: block means of
    a depth map or a provenance of the refinement would describe another field; so would the
    refined file's id, date and claims to be a refinement."""
    make_dataset("latlon", shape=(16, 16), times=2).to_netcdf(tmp_path / "in.nc")
    assert climgen_cli("synthesize", tmp_path / "in.nc", tmp_path / "fine.nc", "--factor", 2, "--quiet").returncode == 0
    result = climgen_cli("coarsen", tmp_path / "fine.nc", tmp_path / "back.nc", "--factor", 2)
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(tmp_path / "back.nc") as back:
        assert "refinement_depth" not in back.variables and "predicted_gain" not in back.variables
        # no record of a refinement it is not, but the record of the one it was made from
        assert sorted(key for key in back.attrs if key.startswith("climgen_")) == ["climgen_coarsened_from", "climgen_version"]
        assert "ancillary_variables" not in back["tas"].attrs
        with xr.open_dataset(tmp_path / "fine.nc") as fine:
            assert {"id", "date_created", "summary", "processing_level"} <= set(fine.attrs)
            assert not {"id", "date_created", "summary", "processing_level"} & set(back.attrs)
            assert back.attrs["title"] == fine.attrs["title"].replace(" (refined x2 by climgen)", "")


def test_a_quoted_glob_of_files_along_time_is_one_input(tmp_path, climgen_cli):
    """One file per year, given as a glob the shell leaves alone: refined as the combined series."""
    series = make_dataset("latlon", shape=(16, 16), times=4)
    series.isel(time=[0, 1]).to_netcdf(tmp_path / "tas_2000.nc")
    series.isel(time=[2, 3]).to_netcdf(tmp_path / "tas_2001.nc")
    result = climgen_cli("synthesize", str(tmp_path / "tas_*.nc"), tmp_path / "out.nc", "--factor", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(tmp_path / "out.nc") as got, xr.open_dataset(tmp_path / "tas_2000.nc") as first:
        assert got.sizes["time"] == 4
        expected = pipeline.synthesize(xr.concat([first, xr.open_dataset(tmp_path / "tas_2001.nc")], "time"), factor=2)
        np.testing.assert_array_equal(got["tas"].values, expected["tas"].values)
    missing = climgen_cli("synthesize", str(tmp_path / "pr_*.nc"), tmp_path / "none.nc")
    assert missing.returncode == 2 and "no input matches" in missing.stderr

"""Every batch recipe in recipes/ validates; the local one runs end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

from climgen.jobs import load_run_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
BATCH = sorted(RECIPES.glob("downscale-*.yaml"))


def test_there_are_batch_recipes():
    assert len(BATCH) >= 3


@pytest.mark.parametrize("recipe", BATCH, ids=[path.stem for path in BATCH])
def test_batch_recipes_validate(recipe):
    job = load_run_recipe(recipe)
    assert job.factor in (2, 4, 8, 16)
    if job.fetch is not None:
        from climgen.jobs import fetch_request

        request = fetch_request(job.fetch)
        assert set(request.variables) <= set(request.collection.variables)
    else:
        assert all(path.exists() for path in job.input_paths())


def test_africa_recipe_runs_and_resumes_nothing_when_done(tmp_path, climgen_cli):
    recipe = RECIPES / "downscale-africa-tas-x4.yaml"
    output = tmp_path / "africa.nc"
    command = ["run", str(recipe), "--output", str(output), "--quiet"]
    first = climgen_cli(*command)
    assert first.returncode == 0, first.stderr
    with xr.open_dataset(output) as refined:
        assert refined["tas"].shape == (12, 156, 160)
        assert "elevation" in refined.attrs["climgen_provenance"]
        # the history names the recipe by its absolute path and content, not as typed alone
        import hashlib

        digest = hashlib.sha256(recipe.read_bytes()).hexdigest()
        assert f"(recipe {recipe.resolve()}, sha256 {digest})" in refined.attrs["history"].splitlines()[0]
    second = climgen_cli(*command)
    assert second.returncode == 0 and "nothing to do" in second.stdout


@pytest.mark.parametrize("recipe", BATCH, ids=[path.stem for path in BATCH])
def test_batch_recipes_dry_run_offline(recipe, tmp_path, climgen_cli):
    result = climgen_cli("run", recipe, "--dry-run", "--output", tmp_path / "out.nc", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job = load_run_recipe(recipe)
    if job.fetch is not None:  # no network: the plan stops at the fetch it would do
        assert result.stdout.startswith("fetch ") and "not fetched yet" in result.stdout
        for name, spec in job.covariates.items():  # a covariate the run would stop at is named
            if not job.resolve(spec.split(":")[0]).exists():
                assert f"covariate   {name}: " in result.stdout and "not found" in result.stdout
    else:
        assert "tasks" in result.stdout and "GMAC" in result.stdout
    assert not (tmp_path / "out.nc").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("budget: 0.5\nadaptive: false", "budget applies to adaptive refinement"),
        ("tolerance: 0.01\nquality: 0.99", "tolerance sets the depth itself"),
        ("factor: 3", "factor must be one of 2, 4, 8, 16"),
        ("residual_gain: 5", "residual_gain must be 'auto' or a number in 0..2"),
        ("order: [[tas]]", "order takes chains of two or more distinct variables"),
        ("bounds: {pr: [1, 0]}", "lower must be below upper"),
        ("precision: float16", "precision"),
    ],
)
def test_recipes_and_the_library_share_one_set_of_rules(tmp_path, options, message):
    """A recipe is checked by the same model as synthesize(): a combination the library
    refuses fails when the recipe loads, with the same words and the recipe's path."""
    from climgen.config import SynthesisOptions
    from climgen.errors import ConfigError
    from climgen.jobs import RunRecipe
    from climgen.pipeline import make_config

    assert issubclass(RunRecipe, SynthesisOptions)
    recipe = tmp_path / "job.yaml"
    recipe.write_text(f"input: in.nc\noutput: out.nc\n{options}\n")
    with pytest.raises(ConfigError, match=message) as raised:
        load_run_recipe(recipe)
    assert str(recipe) in str(raised.value)
    import yaml

    with pytest.raises(ConfigError, match=message):
        make_config(**yaml.safe_load(options))


def test_fetch_dates_are_read_quoted_or_not(tmp_path):
    import datetime as dt

    from climgen.errors import ConfigError
    from climgen.jobs import fetch_request

    text = (RECIPES / "downscale-merra2-front-range-x8.yaml").read_text()
    job = load_run_recipe(RECIPES / "downscale-merra2-front-range-x8.yaml")
    quoted = f'"{job.fetch.start.isoformat()}"'
    assert quoted in text  # the shipped recipe quotes its dates; YAML reads an unquoted one as a date
    unquoted = tmp_path / "unquoted.yaml"
    unquoted.write_text(text.replace(quoted, job.fetch.start.isoformat()))
    assert fetch_request(load_run_recipe(unquoted).fetch).start == job.fetch.start
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace(quoted, '"2020-13-01"'))
    with pytest.raises(ConfigError, match="fetch.start"):
        load_run_recipe(wrong)
    assert isinstance(job.fetch.start, dt.date)


def test_a_recipe_runs_a_shipped_model_by_name_and_refuses_files_on_another_grid(tmp_path, climgen_cli):
    from climgen.testing import make_dataset

    data = make_dataset("latlon", shape=(16, 16), times=4)
    data.isel(time=[0, 1]).assign_attrs(tracking_id="hdl:21.14100/file-a").to_netcdf(tmp_path / "tas_a.nc")
    data.isel(time=[2, 3]).assign_attrs(tracking_id="hdl:21.14100/file-b").to_netcdf(tmp_path / "tas_b.nc")
    (tmp_path / "fast.yaml").write_text("input: tas_*.nc\noutput: fine.nc\nfactor: 2\nmodel: amsgm-fast\n")
    ran = climgen_cli("run", tmp_path / "fast.yaml", "--quiet")
    assert ran.returncode == 0, ran.stderr
    with xr.open_dataset(tmp_path / "fine.nc") as fine:
        assert fine.attrs["climgen_model"] == "amsgm-fast" and fine.sizes["time"] == 4
        # every input file's id, not the first's alone (provenance, ESGF errata)
        assert fine.attrs["climgen_input_tracking_id"] == "hdl:21.14100/file-a hdl:21.14100/file-b"
    make_dataset("latlon", shape=(20, 20), name="orog").to_netcdf(tmp_path / "tas_orog.nc")  # a glob picks it up
    (tmp_path / "mixed.yaml").write_text("input: tas_*.nc\noutput: mixed.nc\nfactor: 2\n")
    refused = climgen_cli("run", tmp_path / "mixed.yaml", "--quiet")
    assert refused.returncode == 2 and "is on another grid than" in refused.stderr
    assert not (tmp_path / "mixed.nc").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input: []\noutput: o.nc\n", "input lists no file"),
        ("input: a.nc\noutput: o.nc\nbase_dir: /etc\n", "base_dir is not a recipe key"),
        ("input: a.nc\noutput: o.nc\nseed: 2020-02-30\n", "quote the value"),
        ("input: a.nc\noutput: o.nc\nchunks: {time_chunk: '8'}\n", "must be an integer"),
        ("input: a.nc\noutput: o.nc\noverwrite: 'yes'\n", "overwrite"),
        ("input: a.nc\noutput: o.nc\nfactr: 4\n", "unknown key 'factr' (did you mean 'factor'?)"),
        ("input: a.nc\noutput: o.nc\nchunks: {region_tile: 2}\n", "unknown key 'region_tile' in chunks (did you mean"),
        # a key climgen sets itself is never suggested: it would be refused in turn
        ("input: a.nc\noutput: o.nc\nbasedir: x\n", "unknown key 'basedir' (known: "),
    ],
)
def test_a_broken_batch_recipe_is_one_line(tmp_path, text, message, climgen_cli):
    (tmp_path / "r.yaml").write_text(text)
    result = climgen_cli("run", tmp_path / "r.yaml", "--dry-run")
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_output_folders_that_are_files_and_zero_workers_are_refused_before_work(tmp_path, climgen_cli):
    from climgen.testing import make_dataset

    make_dataset("latlon", shape=(16, 16)).to_netcdf(tmp_path / "in.nc")
    (tmp_path / "afile").write_text("")
    for command in (
        ("demo", "--out", tmp_path / "afile"),
        ("evaluate", "--truth", tmp_path / "in.nc", "--pred", tmp_path / "in.nc", "--out", tmp_path / "afile"),
    ):
        result = climgen_cli(*command)
        assert result.returncode == 2 and "is a file; give a folder" in result.stderr, result.stderr
    (tmp_path / "r.yaml").write_text("input: in.nc\noutput: o.nc\nfactor: 2\n")
    result = climgen_cli("run", tmp_path / "r.yaml", "--workers", "0")
    assert result.returncode == 2 and "workers must be >= 1" in result.stderr
    assert climgen_cli("--version").stdout.startswith("climgen ")


def test_a_recipe_that_fetches_checks_its_covariates_before_the_download(tmp_path, climgen_cli):
    """A missing covariate is said at once, before any login or download, and leaves no folder."""
    recipe = tmp_path / "fetch.yaml"
    recipe.write_text(
        "fetch:\n  collection: merra2-hourly\n  variables: [T2M]\n  bbox: [-107.5, 38.0, -103.5, 41.5]\n"
        '  start: "2021-07-01"\n  end: "2021-07-02"\n  cube: cubes/t2m.zarr\n'
        "output: out/t2m_x8.nc\ncovariates:\n  elevation: dem.nc:Band1\nfactor: 8\n"
    )
    result = climgen_cli("run", recipe, cwd=tmp_path)
    assert result.returncode == 2 and "covariate elevation: file not found" in result.stderr and "dem.nc" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fetch.yaml"]

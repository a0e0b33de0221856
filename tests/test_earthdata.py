"""Earthdata fetch through the real earthaccess code path, offline.

A local HTTPS server plays Earthdata Login, CMR and GES DISC: it answers the login profile
check, answers granule searches with a recorded-format UMM-JSON response (tests/data/earthdata,
made by tests/data/make_data.py, links rewritten to this server) and serves the granule files.
earthaccess logs in with a token from the environment, searches, and downloads exactly as it
would from NASA; requests trusts the server through REQUESTS_CA_BUNDLE (a self-signed test
certificate for 127.0.0.1 kept beside the recorded data).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import xarray as xr

earthaccess = pytest.importorskip("earthaccess")

from earthaccess.system import System  # noqa: E402

from climgen.errors import ConfigError, OutputExistsError  # noqa: E402
from climgen.io import earthdata, granules  # noqa: E402

RECORDED = Path(__file__).parent / "data" / "earthdata"
GESDISC = "https://data.gesdisc.earthdata.nasa.gov"


class _Earthdata(BaseHTTPRequestHandler):
    searches: list[dict] = []
    downloads: list[tuple[str, str]] = []
    refused: dict[str, int] = {}  # file name -> the HTTP status the data server answers instead

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server naming)
        url = urlparse(self.path)
        base = f"https://{self.headers['Host']}"
        if url.path == "/profile":  # Earthdata Login: earthaccess checks the session here
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        if url.path == "/search/granules.umm_json":
            query = parse_qs(url.query)
            self.searches.append(query)
            if query.get("short_name") != ["M2T1NXSLV"]:
                body = json.dumps({"hits": 0, "took": 1, "items": []}).encode()
            else:
                body = (RECORDED / "M2T1NXSLV_granules.umm_json").read_text().replace(GESDISC, base).encode()
            hits = json.loads(body)["hits"]
            if query.get("page_size") == ["0"]:  # a count-only query, as CMR answers it
                body = json.dumps({"hits": hits, "took": 1, "items": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.nasa.cmr.umm_results+json")
            self.send_header("CMR-Hits", str(hits))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        name = url.path.rsplit("/", 1)[-1]
        path = RECORDED / name
        if not url.path.startswith("/data/") or not path.is_file():
            self.send_error(404)
            return
        if name in self.refused:
            self.send_error(self.refused[name])
            return
        self.downloads.append((name, self.headers.get("Authorization", "")))
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def earthdata_server(monkeypatch):
    """A local CMR + DAAC, an earthaccess System pointing at it, and a token in the environment."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Earthdata)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(RECORDED / "localhost-cert.pem", RECORDED / "localhost-key.pem")
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(RECORDED / "localhost-cert.pem"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host = f"127.0.0.1:{server.server_address[1]}"
    system = System(f"https://{host}/search/", f"https://{host}/status", f"https://{host}/status/api", host)
    monkeypatch.setenv("EARTHDATA_TOKEN", "test-token-123")
    _Earthdata.searches, _Earthdata.downloads, _Earthdata.refused = [], [], {}
    yield system
    server.shutdown()


def _request(**changes) -> earthdata.Request:
    values = {
        "collection": earthdata.find_collection("merra2-hourly"),
        "variables": ("T2M", "U10M"),
        "bbox": (1.0, 41.0, 6.0, 45.0),
        "start": dt.date(2020, 1, 1),
        "end": dt.date(2020, 1, 2),
    } | changes
    return earthdata.Request(**values)


def test_earthdata_fetch_searches_downloads_and_assembles_the_cube(earthdata_server, tmp_path):
    cube = tmp_path / "merra2.zarr"
    report = earthdata.fetch(_request(), cube, system=earthdata_server)

    search = next(query for query in _Earthdata.searches if query.get("page_size") != ["0"])
    assert search["short_name"] == ["M2T1NXSLV"] and search["version"] == ["5.12.4"]
    assert search["temporal[]"] == ["2020-01-01T00:00:00Z,2020-01-02T23:59:59Z"]
    assert search["bounding_box"] == ["1.0,41.0,6.0,45.0"]
    assert sorted(name for name, _ in _Earthdata.downloads) == [
        "MERRA2_400.tavg1_2d_slv_Nx.20200101.nc4",
        "MERRA2_400.tavg1_2d_slv_Nx.20200102.nc4",
    ]
    assert all(auth == "Bearer test-token-123" for _, auth in _Earthdata.downloads)
    assert report.granules == 2 and len(report.downloaded) == 2

    with xr.open_zarr(cube) as got:
        assert got["T2M"].dims == ("time", "lat", "lon") and got.sizes["time"] == 48
        assert np.all(np.diff(got["time"].values) == np.timedelta64(60, "m"))
        assert float(got.lat.min()) >= 41 and float(got.lat.max()) <= 45
        assert float(got.lon.min()) >= 1 and float(got.lon.max()) <= 6
        assert got["T2M"].attrs["units"] == "K" and got["T2M"].attrs["standard_name"] == "air_temperature"
        assert got["T2M"].encoding["chunks"] == (24, got.sizes["lat"], got.sizes["lon"])
        with xr.open_dataset(RECORDED / "MERRA2_400.tavg1_2d_slv_Nx.20200102.nc4") as granule:
            expected = granule["U10M"].sel(lat=slice(41, 45), lon=slice(1, 6)).values
        np.testing.assert_array_equal(got["U10M"].isel(time=slice(24, 48)).values, expected)
        recorded = json.loads(got.attrs["climgen_fetch"])
        assert recorded["granules"] == sorted(f"M2T1NXSLV.5.12.4:{name}" for name, _ in _Earthdata.downloads)
    manifest = json.loads((earthdata.cache_folder(cube) / "manifest.json").read_text())
    assert len(manifest) == 2 and all(entry["checksum"][0] == "MD5" for entry in manifest.values())


def test_earthdata_rerun_fetches_only_missing_or_corrupt_granules(earthdata_server, tmp_path):
    cube = tmp_path / "merra2.zarr"
    earthdata.fetch(_request(), cube, system=earthdata_server)
    assert len(_Earthdata.downloads) == 2

    again = earthdata.fetch(_request(), cube, system=earthdata_server)
    assert len(_Earthdata.downloads) == 2 and again.downloaded == [] and not again.cube_written
    # up to date: no login, no search (a rerun on a node without network, or during an outage)
    offline = earthdata.fetch(_request(), cube, system=object())
    assert offline.granules == 2 and not offline.cube_written
    # the same variables in another order are the same cube; fewer days would drop some it holds
    earthdata.fetch(_request(variables=("U10M", "T2M")), cube, system=earthdata_server)
    assert earthdata.interruption_note(cube).startswith(f"interrupted: 2 granule files kept in {earthdata.cache_folder(cube)}")
    assert earthdata.interruption_note(tmp_path / "none.zarr") == "interrupted before any granule was downloaded: nothing kept"
    with pytest.raises(OutputExistsError, match=r"holds 2020-01-01..2020-01-02, and the request for 2020-01-02..2020-01-02"):
        earthdata.fetch(_request(start=dt.date(2020, 1, 2)), cube, system=earthdata_server)
    assert len(_Earthdata.downloads) == 2
    earthdata.fetch(_request(), cube, system=earthdata_server, overwrite=True)

    # a whole cube of this request is kept as it is, its granule cache deleted or not
    cache = earthdata.cache_folder(cube)
    shutil.move(cache, tmp_path / "kept-cache")
    kept = earthdata.fetch(_request(), cube, system=earthdata_server)
    assert len(_Earthdata.downloads) == 2 and not kept.cube_written
    shutil.move(tmp_path / "kept-cache", cache)

    shutil.rmtree(cube)  # a cube to build again, from a cache with an interrupted download
    partial = cache / "MERRA2_400.tavg1_2d_slv_Nx.20200102.nc4"
    partial.write_bytes(partial.read_bytes()[:5000])
    repaired = earthdata.fetch(_request(), cube, system=earthdata_server)
    assert [name for name, _ in _Earthdata.downloads[2:]] == [partial.name]
    assert repaired.refetched == ["M2T1NXSLV.5.12.4:" + partial.name] and repaired.cube_written
    with xr.open_zarr(cube) as got:
        assert got.sizes["time"] == 48 and np.isfinite(got["T2M"].values).all()


def test_earthdata_different_cube_needs_overwrite_and_empty_search_is_an_error(earthdata_server, tmp_path):
    cube = tmp_path / "merra2.zarr"
    earthdata.fetch(_request(), cube, system=earthdata_server)
    with pytest.raises(OutputExistsError, match="another cube"):
        earthdata.fetch(_request(variables=("T2M",)), cube, system=earthdata_server)
    earthdata.fetch(_request(variables=("T2M",)), cube, system=earthdata_server, overwrite=True)
    with xr.open_zarr(cube) as got:
        assert list(got.data_vars) == ["T2M"]
    imerg = earthdata.find_collection("GPM_3IMERGDF")
    with pytest.raises(earthdata.InputError, match="no GPM_3IMERGDF 07 granules"):
        earthdata.fetch(
            _request(collection=imerg, variables=("precipitation",)), tmp_path / "imerg.zarr", system=earthdata_server
        )


def test_earthdata_cube_refines_and_keeps_cf_metadata(earthdata_server, tmp_path, climgen_cli):
    cube = tmp_path / "merra2.zarr"
    earthdata.fetch(_request(bbox=(0.0, 40.0, 8.0, 46.0)), cube, system=earthdata_server)
    refined = tmp_path / "refined.nc"
    result = climgen_cli("synthesize", cube, refined, "--factor", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    with xr.open_zarr(cube) as coarse, xr.open_dataset(refined) as fine:
        assert fine["T2M"].shape == (48, 2 * coarse.sizes["lat"], 2 * coarse.sizes["lon"])
        for name in ("T2M", "U10M"):
            assert fine[name].attrs["units"] == coarse[name].attrs["units"]
            assert fine[name].attrs["standard_name"] == coarse[name].attrs["standard_name"]
            block_means = fine[name].coarsen(lat=2, lon=2).mean().values
            np.testing.assert_allclose(block_means, coarse[name].values, atol=2e-3)
        assert "M2T1NXSLV" in fine.attrs["source"]
        assert "climgen fetch" in fine.attrs["history"] and "climgen synthesize" in fine.attrs["history"]


def test_a_box_between_grid_centres_is_an_error_not_an_empty_cube(earthdata_server, tmp_path):
    with pytest.raises(earthdata.InputError, match="holds no grid centre"):
        earthdata.fetch(_request(bbox=(1.3, 41.1, 1.4, 41.2)), tmp_path / "empty.zarr", system=earthdata_server)
    assert not (tmp_path / "empty.zarr").exists()


def test_earthdata_fetch_without_credentials_fails_fast_in_one_line(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EARTHDATA_")}
    environment |= {"HOME": str(tmp_path), "NETRC": str(tmp_path / "no-netrc")}
    command = [sys.executable, "-m", "climgen.cli", "fetch", "--collection", "merra2-hourly", "--variables", "T2M"]
    command += ["--bbox=-10,30,5,45", "--start", "2020-01-01", "--out", str(tmp_path / "cube.zarr")]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment)
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "EARTHDATA_USERNAME" in result.stderr and ".netrc" in result.stderr
    assert not (tmp_path / "cube.zarr").exists()


def test_earthdata_request_validation():
    with pytest.raises(ConfigError, match="W,S,E,N"):
        _request(bbox=(10.0, 0.0, 10.0, 1.0)).validate()
    with pytest.raises(ConfigError, match="W,S,E,N"):
        _request(bbox=(190.0, 0.0, 200.0, 1.0)).validate()
    _request(bbox=(170.0, -10.0, -170.0, 10.0)).validate()  # across the antimeridian
    with pytest.raises(ConfigError, match="west and east swapped"):  # no box to cut: said before any download
        _request(bbox=(-103.5, 38.0, -107.5, 41.5)).validate()
    with pytest.raises(ConfigError, match="before start"):
        _request(end=dt.date(2019, 12, 31)).validate()
    with pytest.raises(ConfigError, match="unknown collection"):
        earthdata.find_collection("ERA5")
    with pytest.raises(ConfigError, match="four numbers"):
        earthdata.parse_bbox("1,2,3")
    assert earthdata.find_collection("m2t1nxslv").version == "5.12.4"
    with pytest.raises(ConfigError, match="cannot be assembled"):
        earthdata.fetch(_request(collection=earthdata.find_collection("nasadem"), variables=("elevation",)), "dem.zarr")
    with pytest.raises(ConfigError, match="the folder of the cube, .*, does not exist"):  # before any login
        earthdata.fetch(_request(), "no-such-folder/cube.zarr", system=object())


@pytest.mark.parametrize("first_lon", [-180.0, 0.0])
def test_a_box_across_the_antimeridian_is_cut_contiguous(first_lon):
    """A Pacific box (W > E) from a granule in either longitude convention: one contiguous
    block, longitudes 0..360 ascending, each cell the granule's."""
    lon = first_lon + 2.5 * np.arange(144)
    lat = np.arange(-20.0, 21.0, 2.0)
    values = np.add.outer(lat, lon % 360).astype(np.float32)
    granule = xr.Dataset({"T2M": (("lat", "lon"), values, {"units": "K"})}, coords={"lat": lat, "lon": lon})
    cut = earthdata.subset(granule, ("T2M",), (170.0, -10.0, -170.0, 10.0))
    assert np.allclose(cut["lon"].values, np.arange(170.0, 190.1, 2.5))
    assert (np.diff(cut["lat"].values) > 0).all() and cut["lat"].values[[0, -1]].tolist() == [-10.0, 10.0]
    np.testing.assert_array_equal(cut["T2M"].values, np.add.outer(cut["lat"].values, cut["lon"].values))


def _eager_cube(paths, request):
    """The cube as climgen assembled it before it streamed: every granule read, then joined."""
    parts = []
    for path in paths:
        with xr.open_dataset(path, engine="netcdf4") as granule:
            parts.append(earthdata.subset(granule, request.variables, request.bbox).load())
    cube = xr.concat(parts, dim="time").sortby("time")
    return cube.isel(time=np.unique(cube["time"].values, return_index=True)[1])


def _granules(folder: Path, count: int) -> list[Path]:
    """``count`` local MERRA-2-like granules of 6 hourly steps, written newest first."""
    rng = np.random.default_rng(count)
    lat, lon = np.linspace(40.25, 45.75, 90), np.linspace(0.3, 6.9, 135)
    folder.mkdir()
    paths = []
    for index in reversed(range(count)):  # out of order: the cube sorts by time
        times = np.datetime64("2020-01-01T00:00") + np.timedelta64(6 * index, "h") + np.arange(6) * np.timedelta64(1, "h")
        variables = {
            name: (("time", "lat", "lon"), rng.normal(280, 5, (6, lat.size, lon.size)).astype(np.float32), {"units": units})
            for name, units in (("T2M", "K"), ("U10M", "m s-1"))
        }
        paths.append(folder / f"granule-{index:03d}.nc4")
        xr.Dataset(variables, coords={"time": times, "lat": lat, "lon": lon}).to_netcdf(paths[-1])
    return sorted(paths)


def _peak_writing(paths: list[Path], request, target: Path) -> int:
    import tracemalloc

    tracemalloc.start()
    with earthdata.assemble_cube(paths, request) as lazy:
        assert all(lazy[name].chunks is not None for name in request.variables), "nothing is read before writing"
        granules.write_cube(lazy, target, request, "{}")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_sixty_granules_stream_into_the_cube_in_bounded_memory(tmp_path):
    """60 local granules: the same cube as reading them all at once (as climgen did), written
    chunk by chunk; peak memory is about that of 20 granules, not three times it, and under a third
    of reading every granule first."""
    request = _request(bbox=(1.0, 41.0, 6.0, 45.0))
    few, many = _granules(tmp_path / "few", 20), _granules(tmp_path / "many", 60)
    import tracemalloc

    tracemalloc.start()
    expected = _eager_cube(many, request)
    eager_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peaks = [_peak_writing(paths, request, tmp_path / f"{len(paths)}.zarr") for paths in (few, many)]
    with xr.open_zarr(tmp_path / "60.zarr") as written:
        assert written.sizes["time"] == 360
        for name in request.variables:
            np.testing.assert_array_equal(written[name].values, expected[name].values)
        np.testing.assert_array_equal(written["time"].values, expected["time"].values)
    assert peaks[1] < 1.5 * peaks[0] + 2**20, f"peak {peaks[1] / 2**20:.1f} MiB for 60 granules, {peaks[0] / 2**20:.1f} for 20"
    assert peaks[1] < eager_peak / 3, f"peak {peaks[1] / 2**20:.1f} MiB, reading every granule {eager_peak / 2**20:.1f} MiB"


def test_a_fetched_cube_is_known_as_the_request_it_holds(earthdata_server, tmp_path):
    """A batch job whose cube is already fetched refines it without the network (a rerun on a
    compute node); another box, variable or date range is not the same request."""
    cube = tmp_path / "merra2.zarr"
    assert not earthdata.holds(_request(), cube)
    earthdata.fetch(_request(), cube, system=earthdata_server)
    assert earthdata.holds(_request(), cube)
    assert not earthdata.holds(_request(bbox=(0.0, 40.0, 8.0, 46.0)), cube)
    assert not earthdata.holds(_request(variables=("T2M",)), cube)
    assert earthdata.holds(_request(variables=("U10M", "T2M")), cube)  # the same variables, named in another order
    with xr.open_zarr(cube) as got:  # CF's time coordinate
        assert got["time"].attrs["standard_name"] == "time" and got["time"].attrs["axis"] == "T"


def test_days_the_granules_do_not_cover_are_said_and_searched_for_again(earthdata_server, tmp_path):
    """A request past the granules published (IMERG Final's months of latency) made a cube of
    the days found, recorded as the whole request: a rerun never looked again."""
    from climgen.errors import InputWarning

    cube, longer = tmp_path / "merra2.zarr", _request(end=dt.date(2020, 1, 4))
    with pytest.warns(InputWarning, match=r"cover 2020-01-01\.\.2020-01-02 of the 2020-01-01\.\.2020-01-04 asked for"):
        earthdata.fetch(longer, cube, system=earthdata_server)
    assert not earthdata.holds(longer, cube)  # a rerun searches again
    with xr.open_zarr(cube) as got:
        assert json.loads(got.attrs["climgen_fetch"])["complete"] is False and got.sizes["time"] == 48


def test_earthdata_refused_download_misspelt_variable_and_unreadable_cube_are_one_line_errors(earthdata_server, tmp_path):
    second = "MERRA2_400.tavg1_2d_slv_Nx.20200102.nc4"
    _Earthdata.refused = {second: 403}  # the account has not authorised the data centre's application
    with pytest.raises(earthdata.InputError, match=f"download of {second} failed .*authorise its application"):
        earthdata.fetch(_request(), tmp_path / "a.zarr", system=earthdata_server)
    assert not (tmp_path / "a.zarr").exists()
    assert (earthdata.cache_folder(tmp_path / "a.zarr") / "MERRA2_400.tavg1_2d_slv_Nx.20200101.nc4").is_file()  # kept
    _Earthdata.refused = {}

    # a misspelt variable is found in the first granule, before the others are downloaded
    _Earthdata.downloads = []
    with pytest.raises(earthdata.InputError, match=r"20200101.nc4: variables \['SLPX'\] not in the granule"):
        earthdata.fetch(_request(variables=("T2M", "SLPX")), tmp_path / "b.zarr", system=earthdata_server)
    assert len(_Earthdata.downloads) == 1

    (tmp_path / "c.zarr").mkdir()  # an empty folder, or a copy cut short
    with pytest.raises(OutputExistsError, match="c.zarr is not a readable cube .*remove it or pass --overwrite"):
        earthdata.fetch(_request(), tmp_path / "c.zarr", system=earthdata_server)
    earthdata.fetch(_request(), tmp_path / "c.zarr", system=earthdata_server, overwrite=True)
    assert earthdata.holds(_request(), tmp_path / "c.zarr")


def test_earthdata_granules_on_another_grid_are_refused_not_merged(tmp_path):
    paths = []
    for day, shift in ((1, 0.0), (2, 0.3125)):  # the second half a cell east
        with xr.open_dataset(RECORDED / f"MERRA2_400.tavg1_2d_slv_Nx.2020010{day}.nc4") as granule:
            moved = granule.load().assign_coords(lon=granule["lon"] + shift)
        paths.append(tmp_path / f"day{day}.nc4")
        moved.to_netcdf(paths[-1])
    with pytest.raises(earthdata.InputError, match="day2.nc4 is on another grid than day1.nc4"):
        earthdata.assemble_cube(paths, _request()).load()


def test_a_cube_of_granules_stored_lon_lat_is_written_in_cf_order(tmp_path):
    """IMERG's granules store (time, lon, lat); the cube was kept so, against CF's
    recommended (time, lat, lon) order that tools and checkers expect."""
    paths = []
    for day in (1, 2):
        with xr.open_dataset(RECORDED / f"MERRA2_400.tavg1_2d_slv_Nx.2020010{day}.nc4") as granule:
            paths.append(tmp_path / f"day{day}.nc4")
            granule.load().transpose("time", "lon", "lat").to_netcdf(paths[-1])
    with earthdata.assemble_cube(paths, _request()) as cube:
        assert all(cube[name].dims == ("time", "lat", "lon") for name in _request().variables)
        with xr.open_dataset(RECORDED / "MERRA2_400.tavg1_2d_slv_Nx.20200101.nc4") as original:
            expected = original["T2M"].sel(lat=cube["lat"], lon=cube["lon"]).values
        np.testing.assert_array_equal(cube["T2M"].isel(time=slice(0, 24)).values, expected)


def test_a_later_granule_without_a_variable_is_named_and_time_bounds_stay_with_the_time(tmp_path):
    """A granule past the first that lacked a variable gave an error that named no file; the
    time's bounds (IMERG's daily intervals) were dropped while its `bounds` attribute stayed,
    an error for CF checkers."""
    paths = []
    for day in (1, 2):
        with xr.open_dataset(RECORDED / f"MERRA2_400.tavg1_2d_slv_Nx.2020010{day}.nc4") as granule:
            granule = granule.load()
        start = granule["time"].values
        granule["time_bnds"] = (("time", "nv"), np.stack([start, start + np.timedelta64(60, "m")], axis=1))
        granule["time"].attrs["bounds"] = "time_bnds"
        paths.append(tmp_path / f"day{day}.nc4")
        (granule if day == 1 else granule.drop_vars("U10M")).to_netcdf(paths[-1])
    with earthdata.assemble_cube(paths[:1], _request()) as cube:
        assert cube["time"].attrs["bounds"] == "time_bnds" and cube["time_bnds"].sizes["time"] == 24
    with pytest.raises(earthdata.InputError, match=r"day2.nc4: variables \['U10M'\] not in the granule"):
        earthdata.assemble_cube(paths, _request()).load()


def test_a_download_failure_is_called_a_refusal_only_when_the_server_refused():
    imerg = "https://gpm1.gesdisc.eosdis.nasa.gov/data/GPM_L3/3B-DAY.MS.MRG.3IMERG.20140101-S000000-E235959.V07.nc4"
    dropped = earthdata._download_failure(ConnectionError(f"Connection aborted while fetching {imerg}"), ["a.nc4"])
    assert "rerun to fetch the rest" in dropped and "refused" not in dropped  # 401 in a date is no status
    refused = earthdata._download_failure(RuntimeError("Download failed. Status code: 403"), ["a.nc4", "b.nc4"])
    assert refused.startswith("download of a.nc4, b.nc4 failed") and "authorise its application" in refused


def test_an_interruption_waits_only_for_the_granules_in_flight(earthdata_server, tmp_path, monkeypatch):
    """Granules are handed to earthaccess as many at a time as download at once: its thread
    pool finishes all it was given before Ctrl-C gets through, so given them all, an
    interrupted fetch downloaded every one first."""
    earthdata.login(earthdata_server)
    granules = earthdata.search(_request(), earthdata_server)
    files = [earthdata.GranuleFile.from_granule(granule) for granule in granules]
    monkeypatch.setattr(earthdata, "DOWNLOAD_THREADS", 1)
    download = earthaccess.download
    batches = []

    def interrupted_during_the_first(batch, **options):
        batches.append(len(batch))
        if _Earthdata.downloads:  # Ctrl-C while the first batch downloaded reaches the loop here
            raise KeyboardInterrupt
        return download(batch, **options)

    monkeypatch.setattr(earthaccess, "download", interrupted_during_the_first)
    folder = tmp_path / "granules"
    folder.mkdir()
    with pytest.raises(KeyboardInterrupt):
        earthdata._download(files, granules, folder, print)
    assert batches == [1, 1] and len(_Earthdata.downloads) == 1
    assert (folder / files[0].name).exists() and not (folder / files[1].name).exists()


def test_a_cube_that_lost_a_chunk_is_not_refined_as_it_is_but_built_again(earthdata_server, tmp_path):
    cube = tmp_path / "merra2.zarr"
    earthdata.fetch(_request(), cube, system=earthdata_server)
    assert earthdata.holds(_request(), cube)
    lost = cube / "T2M" / "1.0.0"  # the second day, as an interrupted copy to scratch leaves it
    lost.unlink()
    assert not earthdata.holds(_request(), cube)  # a recipe rerun would refine a day of missing values
    logged = []
    rebuilt = earthdata.fetch(_request(), cube, system=earthdata_server, log=logged.append)
    assert rebuilt.cube_written and rebuilt.downloaded == [] and "lacks 1 of its chunks" in logged[0]
    assert lost.exists() and earthdata.holds(_request(), cube)
    with xr.open_zarr(cube) as got:
        assert np.isfinite(got["T2M"].values).all()

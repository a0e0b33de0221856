"""NASA Earthdata in: search, download and cache granules as one chunked zarr cube.

Built on ``earthaccess``: login from environment variables or ``.netrc`` (never interactive),
granule search in CMR by short name, version, time range and bounding box, download into a
cache folder beside the cube, and assembly of the requested variables over the bounding box
into a zarr store. The cache keeps a manifest of granules; each file is checked (size and
checksum from CMR when given, and that it opens) so a rerun downloads only what is missing,
corrupt or partial. The cube is written atomically and records the granules it came from.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import netrc
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from climgen.errors import (
    ConfigError,
    CredentialsError,
    InputError,
    InputWarning,
    MissingDependencyError,
    OutputExistsError,
    warn_user,
)
from climgen.io.catalog import CATALOG, Collection, find_collection  # noqa: F401 (public here since 0.1)
from climgen.io.granules import assemble_cube, subset, write_cube

EDL_HOST = "urs.earthdata.nasa.gov"


def credentials_strategy(hostname: str = EDL_HOST) -> str | None:
    """``"environment"`` or ``"netrc"``: where earthaccess will find credentials, or None."""
    if os.environ.get("EARTHDATA_TOKEN") or (os.environ.get("EARTHDATA_USERNAME") and os.environ.get("EARTHDATA_PASSWORD")):
        return "environment"
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        if path.is_file() and netrc.netrc(path).authenticators(hostname):
            return "netrc"
    except (netrc.NetrcParseError, OSError):
        return None
    return None


def _earthaccess():
    try:
        import earthaccess
    except ImportError as err:  # pragma: no cover - earthaccess is a dependency
        raise MissingDependencyError("fetching from NASA Earthdata needs earthaccess: pip install earthaccess") from err
    # its notices about its own API (DataGranule.size) are for its callers' code, not for users
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"earthaccess(\..*)?$")
    return earthaccess


def login(system=None):
    """Log in to Earthdata Login without prompting; fail at once, in one line, without credentials."""
    earthaccess = _earthaccess()
    system = system or earthaccess.PROD
    hostname = str(system.edl_hostname).split(":")[0]
    strategy = credentials_strategy(EDL_HOST if system is earthaccess.PROD else hostname)
    if strategy is None:
        raise CredentialsError(
            "no NASA Earthdata credentials: set EARTHDATA_USERNAME and EARTHDATA_PASSWORD (or EARTHDATA_TOKEN), "
            f"or add 'machine {EDL_HOST} login USER password PASS' to ~/.netrc"
        )
    try:
        auth = earthaccess.login(strategy=strategy, system=system)
    except Exception as err:  # earthaccess raises its own LoginAttemptFailure, or requests errors
        raise CredentialsError(f"Earthdata login ({strategy}) failed: {str(err).splitlines()[0]}") from err
    if not getattr(auth, "authenticated", False):
        raise CredentialsError(f"Earthdata login ({strategy}) was refused; check the credentials")
    return auth


@dataclass(frozen=True)
class Request:
    """What to fetch: a collection, variables, a bounding box (W, S, E, N) and dates."""

    collection: Collection
    variables: tuple[str, ...]
    bbox: tuple[float, float, float, float]
    start: dt.date
    end: dt.date

    def validate(self) -> Request:
        west, south, east, north = self.bbox
        # W > E: a box across the antimeridian (170,-10,-170,10 over the Pacific), as CMR takes it
        if not (-180 <= west <= 180 and -180 <= east <= 180 and west != east and -90 <= south < north <= 90):
            raise ConfigError(
                f"bbox must be W,S,E,N with W and E in -180..180 (W > E crosses the antimeridian) and "
                f"-90 <= S < N <= 90, got {self.bbox}"
            )
        if west > east and west * east > 0:  # both on one side of 0: not across the antimeridian
            raise ConfigError(
                f"bbox {self.bbox}: west {west:g} is east of east {east:g} on the same side of 0, which would be a box "
                "round nearly the whole globe: west and east swapped?"
            )
        if self.end < self.start:
            raise ConfigError(f"end {self.end} is before start {self.start}")
        if not self.variables:
            raise ConfigError(f"name the variables to fetch, e.g. {','.join(list(self.collection.variables)[:2])}")
        return self

    @property
    def temporal(self) -> tuple[str, str]:
        return f"{self.start.isoformat()}T00:00:00Z", f"{self.end.isoformat()}T23:59:59Z"


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"W,S,E,N"`` as four floats."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ConfigError(f"bbox must be four numbers W,S,E,N, got {text!r}")
    return values  # type: ignore[return-value]


def search(request: Request, system=None) -> list:
    """Granules of the collection that intersect the request (after :func:`login`)."""
    earthaccess = _earthaccess()
    collection = request.collection
    try:
        return earthaccess.search_data(
            short_name=collection.short_name,
            version=collection.version,
            temporal=request.temporal,
            bounding_box=request.bbox,
            count=-1,
        )
    except Exception as err:  # CMR errors come back as RuntimeError with the response text
        raise InputError(f"CMR search for {collection.short_name} failed: {str(err).splitlines()[0]}") from err


@dataclass(frozen=True)
class GranuleFile:
    """One granule's file as CMR describes it (for checking what was downloaded)."""

    granule_id: str
    url: str
    size: int | None
    checksum: tuple[str, str] | None  # (algorithm, hex value)

    @property
    def name(self) -> str:
        return self.url.rstrip("/").split("/")[-1]

    @classmethod
    def from_granule(cls, granule) -> GranuleFile:
        umm = granule["umm"]
        links = granule.data_links()
        if not links:
            raise InputError(f"granule {umm.get('GranuleUR')} has no download link")
        url = links[0]
        name = url.rstrip("/").split("/")[-1]
        size = checksum = None
        for item in umm.get("DataGranule", {}).get("ArchiveAndDistributionInformation", []):
            if item.get("Name") in (name, None):
                size = item.get("SizeInBytes")
                if "Checksum" in item:
                    checksum = (item["Checksum"]["Algorithm"], item["Checksum"]["Value"].lower())
        return cls(umm.get("GranuleUR", name), url, int(size) if size else None, checksum)

    def check(self, path: Path) -> str | None:
        """Why ``path`` is not this granule's complete file (None when it is)."""
        if not path.is_file():
            return "missing"
        if self.size is not None and path.stat().st_size != self.size:
            return f"size {path.stat().st_size} != {self.size}"
        if self.checksum is not None:
            algorithm = self.checksum[0].lower().replace("-", "")
            if algorithm in hashlib.algorithms_available:
                digest = hashlib.new(algorithm, path.read_bytes()).hexdigest()
                if digest != self.checksum[1]:
                    return f"{self.checksum[0]} checksum mismatch"
        try:
            with xr.open_dataset(path, engine="netcdf4"):
                pass
        except (OSError, ValueError) as err:
            return f"unreadable ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        return None


@dataclass
class FetchReport:
    """What a fetch did."""

    cube: Path
    granules: int
    downloaded: list[str] = field(default_factory=list)
    refetched: list[str] = field(default_factory=list)
    cube_written: bool = True

    def summary(self) -> str:
        cached = self.granules - len(self.downloaded)
        return (
            f"{self.granules} granules ({len(self.downloaded)} downloaded, {cached} from the cache"
            + (f", {len(self.refetched)} corrupt or partial ones fetched again" if self.refetched else "")
            + ("); wrote " if self.cube_written else "); up to date: ")
            + str(self.cube)
        )


def cache_folder(cube: Path) -> Path:
    """Where the granules of a cube are kept (beside it, so reruns find them)."""
    return cube.with_name(cube.name + ".granules")


DOWNLOAD_THREADS = 8  # granules downloaded at once, earthaccess's default


def _download(files: list[GranuleFile], granules: list, folder: Path, log: Callable[[str], None]) -> tuple[list, list]:
    earthaccess = _earthaccess()
    downloaded, refetched = [], []
    pending = []
    for granule_file, granule in zip(files, granules, strict=True):
        reason = granule_file.check(folder / granule_file.name)
        if reason is None:
            continue
        if reason != "missing":
            log(f"{granule_file.name}: {reason}; fetching it again")
            refetched.append(granule_file.granule_id)
            (folder / granule_file.name).unlink()
        pending.append((granule_file, granule))
    if pending:
        for leftover in folder.glob("partial_*"):  # earthaccess's temporary files of a download cut short
            leftover.unlink(missing_ok=True)
        # in batches of as many as download at once: earthaccess's thread pool finishes every
        # granule it was given before an interruption (Ctrl-C, a batch time limit) gets through
        for start in range(0, len(pending), DOWNLOAD_THREADS):
            batch = pending[start : start + DOWNLOAD_THREADS]
            try:
                earthaccess.download(
                    [granule for _, granule in batch], local_path=str(folder), threads=DOWNLOAD_THREADS, show_progress=False
                )
            except Exception as error:  # earthaccess raises its own, requests' and OS errors
                raise InputError(_download_failure(error, [granule_file.name for granule_file, _ in batch])) from error
        for granule_file, _ in pending:
            reason = granule_file.check(folder / granule_file.name)
            if reason is not None:
                raise InputError(f"download of {granule_file.name} failed: {reason}")
            downloaded.append(granule_file.granule_id)
    return downloaded, refetched


def _download_failure(error: Exception, names: list[str]) -> str:
    """One line for a failed download: which files, what the server said, and for a refusal
    (401/403, an unaccepted EULA) what to do about it."""
    text = " ".join(str(error).split()) or type(error).__name__
    status = getattr(getattr(error, "response", None), "status_code", None)
    refused = (
        status in (401, 403)
        or type(error).__name__ == "EulaNotAccepted"
        or re.search(r"\b40[13]\b|EULA|Unauthori[sz]ed|Forbidden", text) is not None  # not the digits of a file's date
    )
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    advice = (
        ": the data centre refused the account; authorise its application (e.g. NASA GESDISC DATA ARCHIVE) and "
        "accept its EULA in your Earthdata profile"
        if refused
        else "; files already downloaded are kept, rerun to fetch the rest"
    )
    return f"download of {shown} failed ({text[:300]}){advice}"


def fetch(
    request: Request,
    cube: str | Path,
    system=None,
    overwrite: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> FetchReport:
    """Search, download what the cache lacks, and write the zarr cube (see module docs)."""

    request.validate()
    if not request.collection.assemblable:
        raise ConfigError(
            f"{request.collection.short_name} ({request.collection.file_format}, {request.collection.grid}) cannot be "
            f"assembled into a cube yet: {request.collection.notes}"
        )
    cube = Path(cube).expanduser()
    if cube.suffix != ".zarr":
        raise ConfigError(f"the cube must be a .zarr store, got {cube.name!r}")
    if not cube.parent.is_dir():  # said before the login and the search, not after them
        raise ConfigError(f"the folder of the cube, {cube.parent}, does not exist")
    if cube.exists() and not overwrite:
        recorded = _recorded_fetch(cube)
        if (
            recorded is None
            or sorted(recorded["variables"]) != sorted(request.variables)
            or recorded["bbox"] != list(request.bbox)
        ):
            raise OutputExistsError(f"{cube} holds another cube ({_described(recorded)}); pass --overwrite to replace it")
        if recorded["start"] < str(request.start) or recorded["end"] > str(request.end):
            raise OutputExistsError(
                f"{cube} holds {recorded['start']}..{recorded['end']}, and the request for {request.start}..{request.end} "
                "would drop days it holds: pass --overwrite to replace it, or fetch into another cube"
            )
        if holds(request, cube) and not _lost_chunks(cube, recorded):  # up to date: no login, no network
            report = FetchReport(cube, len(recorded.get("granules", [])), [], [])
            report.cube_written = False
            return report
    login(system)
    granules = search(request, system)
    if not granules:
        raise InputError(
            f"no {request.collection.short_name} {request.collection.version} granules in {request.bbox} "
            f"between {request.start} and {request.end}"
        )
    files = [GranuleFile.from_granule(granule) for granule in granules]
    manifest = {f.granule_id: {"file": f.name, "url": f.url, "size": f.size, "checksum": f.checksum} for f in files}
    identity = json.dumps(_request_identity(request) | {"granules": sorted(manifest), "every_chunk": True}, sort_keys=True)
    if cube.exists() and not overwrite:
        recorded = _recorded_fetch(cube)
        if recorded == json.loads(identity):  # written whole from these granules: nothing to download
            lost = _lost_chunks(cube, recorded)
            if not lost:
                report = FetchReport(cube, len(files), [], [])
                report.cube_written = False
                return report
            log(f"{cube.name} lacks {lost} of its chunks (a copy cut short?): building it again")
    folder = cache_folder(cube)
    folder.mkdir(parents=True, exist_ok=True)
    # the first granule alone, checked for the variables and the box before the rest is downloaded
    downloaded, refetched = _download(files[:1], granules[:1], folder, log)
    with xr.open_dataset(folder / files[0].name, engine="netcdf4") as first:
        try:
            subset(first, request.variables, request.bbox)
        except InputError as error:
            raise InputError(f"{files[0].name}: {error}") from None
    more = _download(files[1:], granules[1:], folder, log)
    downloaded, refetched = downloaded + more[0], refetched + more[1]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    report = FetchReport(cube, len(files), downloaded, refetched)
    with assemble_cube([folder / f.name for f in sorted(files, key=lambda f: f.name)], request) as result:
        short = coverage_gap(result, request)
        if short:  # recorded as short, so that holds() is false and a rerun searches again
            warn_user(short, InputWarning)
            identity = json.dumps(json.loads(identity) | {"complete": False}, sort_keys=True)
        write_cube(result, cube, request, identity)
    return report


def coverage_gap(cube: xr.Dataset, request: Request) -> str | None:
    """What the granules found leave out of the request's days (at its start or end: not yet
    published, or missing at the archive), or None when they cover it."""
    if "time" not in cube.coords or not cube.sizes.get("time"):
        return None
    import pandas as pd

    def day(moment) -> dt.date:  # numpy datetime64, or a cftime date (IMERG's Julian calendar)
        moment = pd.Timestamp(moment) if not hasattr(moment, "year") else moment
        return dt.date(moment.year, moment.month, moment.day)

    times = cube["time"].values
    first, last = day(times[0]), day(times[-1])
    if first <= request.start and last >= request.end:
        return None
    return (
        f"the {request.collection.short_name} granules found cover {first}..{last} of the {request.start}..{request.end} "
        "asked for (not yet published, or missing at the archive): the cube holds those days, and a rerun searches again"
    )


def _recorded_fetch(cube: Path) -> dict | None:
    """The request an existing cube records (None: not a climgen cube); a clear error for a
    folder that is no readable zarr store (empty, or a copy cut short)."""
    try:
        with xr.open_zarr(cube) as existing:
            recorded = existing.attrs.get("climgen_fetch")
        return None if recorded is None else dict(json.loads(recorded))
    except Exception as error:  # zarr's, JSON's and OS errors alike
        raise OutputExistsError(
            f"{cube} is not a readable cube ({type(error).__name__}); remove it or pass --overwrite to replace it"
        ) from error


def _described(recorded: dict | None) -> str:
    """A recorded request in a few words, for a refusal."""
    if recorded is None:
        return "not a cube climgen fetched"
    return f"{','.join(recorded['variables'])} in {recorded['bbox']}, {recorded['start']}..{recorded['end']}"


def interruption_note(cube: str | Path) -> str:
    """What an interrupted fetch into ``cube`` kept, said to the user."""
    folder = cache_folder(Path(cube).expanduser())
    kept = sorted(folder.glob("*.nc*")) if folder.is_dir() else []
    if not kept:
        return "interrupted before any granule was downloaded: nothing kept"
    return (
        f"interrupted: {len(kept)} granule file{'s' if len(kept) != 1 else ''} kept in {folder}; rerun the same "
        "command to fetch only the rest (a file cut short is checked and fetched again)"
    )


def _request_identity(request: Request) -> dict:
    """What a cube was fetched for, as its ``climgen_fetch`` attribute records it."""
    return {
        "collection": request.collection.short_name,
        "version": request.collection.version,
        "variables": sorted(request.variables),  # the same cube whichever order they are named in
        "bbox": list(request.bbox),
        "start": str(request.start),
        "end": str(request.end),
    }


def holds(request: Request, cube: str | Path) -> bool:
    """Whether ``cube`` is a whole cube fetched for ``request`` (collection, variables, box and
    dates): a batch job rerun on a machine without network refines it as it is."""
    cube = Path(cube).expanduser()
    if not (cube / ".zattrs").exists() and not (cube / "zarr.json").exists():
        return False
    try:
        with xr.open_zarr(cube) as existing:
            recorded = json.loads(existing.attrs.get("climgen_fetch", "{}"))
        same = {key: recorded.get(key) for key in _request_identity(request)} == _request_identity(request)
        return same and recorded.get("complete", True) and not _lost_chunks(cube, recorded)
    except (OSError, ValueError, KeyError, AttributeError):  # unreadable, or a record that is no mapping
        return False


def _lost_chunks(cube: Path, recorded: dict) -> int:
    """How many chunks of a cube's arrays are not in the store. A cube written with every chunk
    (its record says ``every_chunk``; missing values too) lacks one only when it was damaged,
    which zarr would read as missing values without a word; older cubes are not told."""
    if not recorded.get("every_chunk"):
        return 0
    import zarr

    group = zarr.open_group(str(cube), mode="r")
    return sum(int(array.nchunks) - int(array.nchunks_initialized) for _, array in group.arrays())

"""Data transfer: ``copy_files`` against plain and hand-tuned ``azure-storage-blob`` code, on Azurite, in one run.

Usage: ``python bench/transfer.py WORKDIR RESULTS.json`` (run by ``bench/run.py`` in a fresh interpreter).
Prints a line per measurement; writes the measurements as JSON. While iterating, ``--cases
big-c2c,small-l2b`` and ``--repeats N`` narrow a run (``run.py`` passes neither).

Two data sets (one 1 GiB file; 2,000 files of 64 KiB) are moved along two routes (container to
container in one Azurite account; local folder to a blob container) by:

- *plain*: ``azure-storage-blob`` with its defaults, one file after the other: ``download_blob().readall()``
  then ``upload_blob(data)``, or ``upload_blob(open(file, "rb"))``;
- *tuned*: the fastest ``azure-storage-blob`` code we could write for the route (settings in :data:`TUNED`,
  picked by trying a few values on the benchmark machine);
- *tuned_blocks* (1 GiB container to container only): hand-tuned Put Block From URL, the protocol
  ``copy_files`` uses across accounts: what moving the bytes costs (Azurite completes a Copy Blob
  within an account without moving any);
- *ours*: ``copy_files`` between backends made by ``open_backend``, as a ``DataTransferStep`` runs it.

Every measurement writes into a fresh container and times (wall clock) the transfer alone, counting the
HTTP requests this process sent and the CPU time of this process and of Azurite meanwhile; then the
container's blob names and sizes, and the bytes of a sample, are checked against the source, and the
container is deleted. Within a repeat the variants take turns, so they share the same background.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

KiB, MiB, GiB = 1024, 1024**2, 1024**3
SOURCE_CONTAINER = "source"


@dataclass(frozen=True)
class DataSet:
    """``count`` files of ``size`` bytes under the folder ``key`` (the same names locally and in the source)."""

    key: str
    label: str
    count: int
    size: int
    #: Measurements of every variant (the fastest is reported).
    repeats: int

    def names(self) -> list[str]:
        if self.count == 1:
            return [f"{self.key}/data.bin"]
        return [f"{self.key}/{i:05d}.bin" for i in range(self.count)]

    @property
    def total(self) -> int:
        return self.count * self.size


DATA_SETS = (
    DataSet("big", "one 1 GiB file", 1, GiB, repeats=2),
    # Runs of small files vary the most from one to the next.
    DataSet("small", "2,000 files of 64 KiB", 2000, 64 * KiB, repeats=3),
)
#: A slice of the small files: ours copies it under cProfile (the whole set takes minutes under it).
PROFILE_SET = DataSet("profile", "200 files of 64 KiB", 200, 64 * KiB, repeats=1)
#: Route keys and how the tables name them.
ROUTES = {"c2c": "container → container", "l2b": "local folder → blob", "b2l": "blob → local folder"}
VARIANT_LABELS = {
    "plain": "(a) plain SDK, defaults",
    "tuned": "(b) hand-tuned SDK",
    "tuned_blocks": "(b') hand-tuned SDK, Put Block From URL",
    "ours": "ours: `copy_files`",
    "ours_step": "ours: a step's output upload / input download",
}
#: The package's variants (each case has one or both).
OURS = ("ours", "ours_step")
#: The hand-tuned settings.
TUNED = {
    "copy_threads": 32,  # blobs copied at once (Copy Blob)
    "block_size": 64 * MiB,  # range per Put Block From URL request
    "block_threads": 8,  # ranges staged at once
    "upload_threads": 32,  # files uploaded at once
    "upload_block_size": 32 * MiB,  # larger files go up in blocks of this size (smaller ones in one Put Blob)
    "upload_block_threads": 8,  # blocks of one file uploaded at once
    "download_threads": 32,  # files downloaded at once
    "download_range": 32 * MiB,  # range per Get Blob request of a large file
    "download_range_threads": 8,  # ranges of one file downloaded at once
}
#: Blobs whose bytes are compared with the source after each measurement (plus the first and the last).
SAMPLE_FILES = 16
#: Ranges of the 1 GiB blob compared with the source after each measurement (plus its last one).
SAMPLE_RANGES = 8
SAMPLE_RANGE = MiB


def variants(data: DataSet, route: str) -> tuple[str, ...]:
    """The variants measured for one case, in the order they run and are reported."""
    if route == "l2b":
        return ("plain", "tuned", "ours", "ours_step")
    if route == "b2l":
        return ("plain", "tuned", "ours_step")
    # On Azurite, Copy Blob points the copy at the source's stored bytes: for the 1 GiB blob, (b') shows
    # what moving the bytes costs. For 64 KiB blobs it is slower than ours and is left out, to save time.
    return ("plain", "tuned", "tuned_blocks", "ours") if data.count == 1 else ("plain", "tuned", "ours")


# -- accounting -----------------------------------------------------------------------------------
class RequestCounter:
    """Counts the HTTP requests this process sends (every SDK client here sends through ``requests``)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def install(self) -> None:
        from requests.adapters import HTTPAdapter

        send, counter = HTTPAdapter.send, self

        def counted(adapter: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
            with counter._lock:
                counter.count += 1
            return send(adapter, request, *args, **kwargs)

        HTTPAdapter.send = counted  # type: ignore[method-assign]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def azurite_version() -> str:
    """The installed Azurite's version, from its ``package.json``."""
    try:
        return json.loads((ROOT / "node_modules" / "azurite" / "package.json").read_text())["version"]
    except (OSError, KeyError, ValueError):
        return "unknown"


def node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass
class Bench:
    """What every variant needs: the running Azurite and the local copy of the source data."""

    azurite: Any
    local_root: Path
    md5: dict[str, str]
    #: Where blob → local variants download to (a fresh folder per measurement).
    download_root: Path
    requests: RequestCounter = field(default_factory=RequestCounter)
    serial: int = 0

    @property
    def conn(self) -> str:
        return self.azurite.connection_string

    def service(self, **options: Any) -> Any:
        """A client with the SDK's defaults (but for ``options``)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.conn, **options)

    def tuned_service(self, threads: int, **options: Any) -> Any:
        """A client whose connection pool keeps a connection per thread (requests keeps 10, and opens and
        drops the others per request), and that does not look proxies up in the environment per request."""
        import requests
        from azure.core.pipeline.transport import RequestsTransport
        from azure.core.pipeline.transport._bigger_block_size_http_adapters import BiggerBlockSizeHTTPAdapter
        from urllib3.util.retry import Retry

        session = requests.Session()
        session.trust_env = False
        # The adapter azure-core mounts, with a bigger pool (and, as there, retries left to the SDK).
        retries = Retry(total=False, redirect=False, raise_on_status=False)
        adapter = BiggerBlockSizeHTTPAdapter(pool_connections=1, pool_maxsize=threads, max_retries=retries)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return self.service(transport=RequestsTransport(session=session), **options)

    def new_container(self, tag: str) -> str:
        self.serial += 1
        name = f"{tag}-{self.serial:04d}".replace("_", "-")
        self.service().create_container(name)
        return name

    def blob_backend(self, container: str) -> Any:
        from aml_airflow_provider.storage import DatastoreConfig, open_backend

        settings = {
            "container_name": container,
            "account_name": self.azurite.account_name,
            "account_url": self.azurite.account_url,
            "credential": "connection_string",
        }
        return open_backend(DatastoreConfig(container, "blob", settings, secret=self.conn))

    def local_backend(self) -> Any:
        from aml_airflow_provider.storage import DatastoreConfig, open_backend

        return open_backend(DatastoreConfig("bench-local", "local", {"root": str(self.local_root)}))

    def read_sas(self) -> str:
        """A read-only SAS on the source container (Put Block From URL reads the source through it)."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        return generate_container_sas(
            self.azurite.account_name,
            SOURCE_CONTAINER,
            account_key=self.azurite.account_key,
            permission=ContainerSasPermissions(read=True),
            expiry=datetime.now(UTC) + timedelta(hours=2),
        )


# -- source data ----------------------------------------------------------------------------------
def make_local_data(root: Path) -> dict[str, str]:
    """Write every data set's files (random bytes) under ``root``; return their hex MD5 by name."""
    md5 = {}
    for data in (*DATA_SETS, PROFILE_SET):
        (root / data.key).mkdir(parents=True, exist_ok=True)
        for name in data.names():
            digest = hashlib.md5(usedforsecurity=False)
            with open(root / name, "wb") as stream:
                left = data.size
                while left:
                    chunk = os.urandom(min(left, 16 * MiB))
                    digest.update(chunk)
                    stream.write(chunk)
                    left -= len(chunk)
            md5[name] = digest.hexdigest()
    return md5


def upload_sources(bench: Bench) -> None:
    """Fill the source container from the local files, each blob with its Content-MD5 (as the package's
    own uploads leave them: ``copy_files`` checks against it)."""
    from azure.storage.blob import ContentSettings

    sizes = {"max_block_size": TUNED["upload_block_size"], "max_single_put_size": TUNED["upload_block_size"]}
    container = bench.service(**sizes).create_container(SOURCE_CONTAINER)

    def one(name: str) -> None:
        settings = ContentSettings(content_md5=bytes.fromhex(bench.md5[name]))
        with open(bench.local_root / name, "rb") as stream:
            threads = TUNED["upload_block_threads"]
            container.upload_blob(name, stream, content_settings=settings, max_concurrency=threads)

    with ThreadPoolExecutor(TUNED["upload_threads"]) as pool:
        list(pool.map(one, [name for data in (*DATA_SETS, PROFILE_SET) for name in data.names()]))


# -- the variants: each moves one data set into the (empty) container ``dst`` -----------------------
def plain_c2c(bench: Bench, data: DataSet, dst: str) -> None:
    """Download each blob whole and upload it again, one after the other, with the SDK's defaults."""
    service = bench.service()
    source, target = service.get_container_client(SOURCE_CONTAINER), service.get_container_client(dst)
    for blob in source.list_blobs(name_starts_with=f"{data.key}/"):
        payload = source.download_blob(blob.name).readall()
        target.upload_blob(blob.name, payload)


def plain_l2b(bench: Bench, data: DataSet, dst: str) -> None:
    """``upload_blob(open(file, "rb"))`` per file, one after the other, with the SDK's defaults."""
    target = bench.service().get_container_client(dst)
    for path in sorted((bench.local_root / data.key).iterdir()):
        with open(path, "rb") as stream:
            target.upload_blob(f"{data.key}/{path.name}", stream)


def tuned_c2c(bench: Bench, data: DataSet, dst: str) -> None:
    """Server-side Copy Blob of every blob from a thread pool, waiting for any copy left pending.

    Within one account the request's Shared Key authorises reading the source: no SAS is needed.
    """
    service = bench.tuned_service(TUNED["copy_threads"])
    source, target = service.get_container_client(SOURCE_CONTAINER), service.get_container_client(dst)
    names = [blob.name for blob in source.list_blobs(name_starts_with=f"{data.key}/")]

    def one(name: str) -> None:
        client = target.get_blob_client(name)
        status = client.start_copy_from_url(f"{source.url}/{name}")["copy_status"]
        while status == "pending":
            time.sleep(0.05)
            status = client.get_blob_properties().copy.status
        if status != "success":
            raise RuntimeError(f"copy of {name} ended {status}")

    with ThreadPoolExecutor(TUNED["copy_threads"]) as pool:
        list(pool.map(one, names))


def tuned_blocks_c2c(bench: Bench, data: DataSet, dst: str) -> None:
    """Put Block From URL (a range of ``block_size`` per request, through a container SAS) for every
    blob, all ranges from one thread pool; then every blob's block list committed from the pool."""
    service = bench.tuned_service(TUNED["block_threads"])
    source, target = service.get_container_client(SOURCE_CONTAINER), service.get_container_client(dst)
    sas, block = bench.read_sas(), TUNED["block_size"]
    blobs = [(b.name, b.size) for b in source.list_blobs(name_starts_with=f"{data.key}/")]
    ranges = [(name, offset, min(block, size - offset)) for name, size in blobs for offset in range(0, size, block)]

    def block_id(offset: int) -> str:
        return f"{offset // block:08d}"

    def stage(job: tuple[str, int, int]) -> None:
        name, offset, length = job
        target.get_blob_client(name).stage_block_from_url(
            block_id(offset), f"{source.url}/{name}?{sas}", source_offset=offset, source_length=length
        )

    def commit(blob: tuple[str, int]) -> None:
        name, size = blob
        target.get_blob_client(name).commit_block_list([block_id(offset) for offset in range(0, size, block)])

    with ThreadPoolExecutor(TUNED["block_threads"]) as pool:
        list(pool.map(stage, ranges))
        list(pool.map(commit, blobs))


def tuned_l2b(bench: Bench, data: DataSet, dst: str) -> None:
    """A thread pool over the files; a file larger than ``upload_block_size`` goes up in blocks of that
    size, ``upload_block_threads`` at a time, a smaller one in one Put Blob."""
    in_blocks = data.size > TUNED["upload_block_size"]
    threads = min(TUNED["upload_threads"], data.count) * (TUNED["upload_block_threads"] if in_blocks else 1)
    sizes = {"max_block_size": TUNED["upload_block_size"], "max_single_put_size": TUNED["upload_block_size"]}
    target = bench.tuned_service(threads, **sizes).get_container_client(dst)

    def one(path: Path) -> None:
        with open(path, "rb") as stream:
            target.upload_blob(f"{data.key}/{path.name}", stream, max_concurrency=TUNED["upload_block_threads"])

    with ThreadPoolExecutor(TUNED["upload_threads"]) as pool:
        list(pool.map(one, sorted((bench.local_root / data.key).iterdir())))


def plain_b2l(bench: Bench, data: DataSet, dst: str) -> None:
    """``download_blob().readall()`` per blob, written to its file, one after the other, with the SDK's defaults."""
    source = bench.service().get_container_client(SOURCE_CONTAINER)
    for blob in source.list_blobs(name_starts_with=f"{data.key}/"):
        local = bench.download_root / dst / blob.name
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(source.download_blob(blob.name).readall())


def tuned_b2l(bench: Bench, data: DataSet, dst: str) -> None:
    """A thread pool over the blobs, each streamed into its file; a large blob in ranges of
    ``download_range``, ``download_range_threads`` at a time."""
    in_ranges = data.size > TUNED["download_range"]
    threads = min(TUNED["download_threads"], data.count) * (TUNED["download_range_threads"] if in_ranges else 1)
    sizes = {"max_single_get_size": TUNED["download_range"], "max_chunk_get_size": TUNED["download_range"]}
    source = bench.tuned_service(threads, **sizes).get_container_client(SOURCE_CONTAINER)
    names = [blob.name for blob in source.list_blobs(name_starts_with=f"{data.key}/")]
    (bench.download_root / dst / data.key).mkdir(parents=True)

    def one(name: str) -> None:
        with open(bench.download_root / dst / name, "wb") as stream:
            source.download_blob(name, max_concurrency=TUNED["download_range_threads"]).readinto(stream)

    with ThreadPoolExecutor(TUNED["download_threads"]) as pool:
        list(pool.map(one, names))


def ours_step_b2l(bench: Bench, data: DataSet, dst: str) -> None:
    """What a step does with a ``download`` input on a blob datastore: ``fetch`` the folder (or file)."""
    path = data.names()[0] if data.count == 1 else data.key
    dest = bench.download_root / dst / data.key
    bench.blob_backend(SOURCE_CONTAINER).fetch(path, dest)


def ours_step_l2b(bench: Bench, data: DataSet, dst: str) -> None:
    """What a step does with an output on a blob datastore when its script has written it: ``replace``."""
    src = bench.local_root / (data.names()[0] if data.count == 1 else data.key)
    bench.blob_backend(dst).replace(src, data.names()[0] if data.count == 1 else data.key)


def ours_c2c(bench: Bench, data: DataSet, dst: str) -> None:
    _ours(bench.blob_backend(SOURCE_CONTAINER), bench, data, dst)


def ours_l2b(bench: Bench, data: DataSet, dst: str) -> None:
    _ours(bench.local_backend(), bench, data, dst)


def _ours(source: Any, bench: Bench, data: DataSet, dst: str) -> None:
    """``copy_files`` of the data set's folder (or its one file) into ``dst``; its stats must add up."""
    from aml_airflow_provider.storage.copy import copy_files

    path = data.names()[0] if data.count == 1 else data.key
    stats = copy_files(source, path, bench.blob_backend(dst), path, directory=data.count > 1, overwrite=False)
    if (stats.files, stats.bytes) != (data.count, data.total):
        raise RuntimeError(f"copy_files reported {stats.files} files and {stats.bytes} bytes for {data.label}")


#: ``(variant, route)``: the function that moves a data set along the route.
VARIANTS: dict[tuple[str, str], Callable[[Bench, DataSet, str], None]] = {
    ("plain", "c2c"): plain_c2c,
    ("plain", "l2b"): plain_l2b,
    ("tuned", "c2c"): tuned_c2c,
    ("tuned", "l2b"): tuned_l2b,
    ("tuned_blocks", "c2c"): tuned_blocks_c2c,
    ("ours", "c2c"): ours_c2c,
    ("ours", "l2b"): ours_l2b,
    ("ours_step", "l2b"): ours_step_l2b,
    ("plain", "b2l"): plain_b2l,
    ("tuned", "b2l"): tuned_b2l,
    ("ours_step", "b2l"): ours_step_b2l,
}


# -- measuring ------------------------------------------------------------------------------------
def verify_local(bench: Bench, data: DataSet, folder: Path, rng: random.Random) -> None:
    """Raise unless ``folder`` holds exactly the data set's files, with their sizes and sampled bytes."""
    found = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    if found != dict.fromkeys(data.names(), data.size):
        raise RuntimeError(f"{folder}: {len(found)} files, not the {data.count} of {data.label}")
    names = data.names()
    sample = {names[0], names[-1], *rng.sample(names, min(SAMPLE_FILES, len(names)))}
    for name in sorted(sample):
        if data.count == 1:  # the 1 GiB file whole: a download writes every byte itself
            digest = hashlib.md5(usedforsecurity=False)
            with open(folder / name, "rb") as stream:
                while chunk := stream.read(16 * MiB):
                    digest.update(chunk)
            got = digest.hexdigest()
        else:
            got = hashlib.md5((folder / name).read_bytes(), usedforsecurity=False).hexdigest()
        if got != bench.md5[name]:
            raise RuntimeError(f"{folder / name}: MD5 {got}, the source's {bench.md5[name]}")


def verify(bench: Bench, data: DataSet, container: str, rng: random.Random) -> None:
    """Raise unless ``container`` holds exactly the data set's blobs, with their sizes and sampled bytes."""
    client = bench.service().get_container_client(container)
    found = {blob.name: blob.size for blob in client.list_blobs()}
    expected = dict.fromkeys(data.names(), data.size)
    if found != expected:
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        wrong = sorted(name for name in set(found) & set(expected) if found[name] != expected[name])
        raise RuntimeError(f"{container}: missing {missing[:5]}, unexpected {extra[:5]}, wrong size {wrong[:5]}")
    names = data.names()
    if data.count > 1:
        for name in sorted({names[0], names[-1], *rng.sample(names, SAMPLE_FILES)}):
            got = hashlib.md5(client.download_blob(name).readall(), usedforsecurity=False).hexdigest()
            if got != bench.md5[name]:
                raise RuntimeError(f"{container}/{name}: MD5 {got}, the source's {bench.md5[name]}")
        return
    name = names[0]
    offsets = {data.size - SAMPLE_RANGE, *(rng.randrange(data.size - SAMPLE_RANGE) for _ in range(SAMPLE_RANGES))}
    with open(bench.local_root / name, "rb") as stream:
        for offset in sorted(offsets):
            stream.seek(offset)
            if client.download_blob(name, offset=offset, length=SAMPLE_RANGE).readall() != stream.read(SAMPLE_RANGE):
                raise RuntimeError(f"{container}/{name}: the bytes at offset {offset} differ from the source's")


def measure(bench: Bench, data: DataSet, route: str, variant: str, rng: random.Random) -> dict[str, float]:
    """One variant moving ``data`` into a fresh container: seconds, requests sent and CPU seconds used."""
    if route == "b2l":
        bench.serial += 1
        container = f"{data.key}-{variant}-{bench.serial:04d}"  # a folder under bench.download_root
    else:
        container = bench.new_container(f"{data.key}-{route}-{variant}")
    pid = bench.azurite._proc.pid
    requests, azurite_cpu, own = bench.requests.count, process_cpu(pid), os.times()
    started = time.perf_counter()
    VARIANTS[variant, route](bench, data, container)
    seconds = time.perf_counter() - started
    now = os.times()
    result = {
        "seconds": seconds,
        "requests": bench.requests.count - requests,
        "client_cpu": (now.user + now.system) - (own.user + own.system),
        "azurite_cpu": process_cpu(pid) - azurite_cpu,
    }
    if route == "b2l":
        verify_local(bench, data, bench.download_root / container, rng)
        shutil.rmtree(bench.download_root / container)
    else:
        verify(bench, data, container, rng)
        bench.service().delete_container(container)
    return result


def run_case(bench: Bench, data: DataSet, route: str, repeats: int, rng: random.Random) -> dict[str, Any]:
    """Every variant of one case, ``repeats`` times, taking turns."""
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants(data, route)}
    for repeat in range(repeats):
        for variant, results in runs.items():
            result = measure(bench, data, route, variant, rng)
            results.append(result)
            print(
                f"transfer {data.key} {route} {variant} #{repeat + 1}: {result['seconds']:.2f}s, "
                f"{data.total / result['seconds'] / 1e6:.1f} MB/s, {result['requests']:.0f} requests",
                flush=True,
            )
    return {
        "data": data.key,
        "label": data.label,
        "files": data.count,
        "bytes": data.total,
        "route": route,
        "route_label": ROUTES[route],
        "repeats": repeats,
        "runs": runs,
        "best": {variant: min(results, key=lambda r: r["seconds"]) for variant, results in runs.items()},
    }


def profile_ours(bench: Bench, cases: list[dict[str, Any]], rng: random.Random) -> dict[str, Any] | None:
    """Profile ours copying :data:`PROFILE_SET` along the route of the small-file case where ours is
    furthest behind the hand-tuned SDK: the CPU time of every thread, by function."""
    from profiling import profile_call

    small = [case for case in cases if case["files"] > 1]
    if not small:
        return None
    ratios = {
        (case["route"], variant): case["best"]["tuned"]["seconds"] / case["best"][variant]["seconds"]
        for case in small
        for variant in OURS
        if variant in case["best"]
    }
    route, variant = min(ratios, key=ratios.get)
    if route == "b2l":
        container = "profile"
        profile = profile_call(lambda: VARIANTS[variant, route](bench, PROFILE_SET, container), threads=True)
        verify_local(bench, PROFILE_SET, bench.download_root / container, rng)
        shutil.rmtree(bench.download_root / container)
    else:
        container = bench.new_container(f"profile-{route}")
        profile = profile_call(lambda: VARIANTS[variant, route](bench, PROFILE_SET, container), threads=True)
        verify(bench, PROFILE_SET, container, rng)
        bench.service().delete_container(container)
    title = f"{VARIANT_LABELS[variant]} moving {PROFILE_SET.label} {ROUTES[route]}"
    print(f"transfer: profiled {title}", flush=True)
    return {"title": title, **profile}


def start_azurite(workdir: Path) -> Any:
    """A fresh Azurite (the tests' ``tests/support/azurite.py``) keeping its data under ``workdir``."""
    sys.path.insert(0, str(ROOT))
    from tests.support.azurite import AZURITE_BIN, Azurite

    if not AZURITE_BIN.exists():
        raise SystemExit(f"Azurite is not installed ({AZURITE_BIN} is missing): run `npm install`.")
    workdir.mkdir(parents=True, exist_ok=True)
    server = Azurite(AZURITE_BIN, workdir, _free_port())
    server.start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--cases", help="comma-separated DATA-ROUTE keys, e.g. big-c2c,small-l2b (default: all)")
    parser.add_argument("--repeats", type=int, help="measurements of every variant (default: per data set)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cases = [(data, route) for data in DATA_SETS for route in ROUTES]
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [(data, route) for data, route in cases if f"{data.key}-{route}" in wanted]
    workdir = args.workdir.resolve()
    local_root = workdir / "local"
    md5 = make_local_data(local_root)
    azurite = start_azurite(workdir / "azurite")
    try:
        bench = Bench(azurite, local_root, md5, download_root=workdir / "downloads")
        bench.requests.install()
        upload_sources(bench)
        print(f"transfer: source data written and uploaded in {time.perf_counter() - started:.0f}s", flush=True)
        rng = random.Random(20261125)
        results = [run_case(bench, data, route, args.repeats or data.repeats, rng) for data, route in cases]
        profile = profile_ours(bench, results, rng)
    finally:
        azurite.stop()
        shutil.rmtree(workdir / "azurite", ignore_errors=True)
        shutil.rmtree(local_root, ignore_errors=True)
    args.results.write_text(
        json.dumps(
            {
                "cases": results,
                "profile": profile,
                "tuned": TUNED,
                "variant_labels": VARIANT_LABELS,
                "azurite": azurite_version(),
                "node": node_version(),
                "sdk": f"azure-storage-blob {version('azure-storage-blob')}, azure-core {version('azure-core')}",
                "sample_files": SAMPLE_FILES,
                "sample_ranges": SAMPLE_RANGES,
                "seconds": time.perf_counter() - started,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

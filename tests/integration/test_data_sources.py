"""The three dataset sources against real sources: a git repository, S3 (moto server) and a local
folder, and an HTTP server."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import threading
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from modelrunner.data.files_source import FilesSource
from modelrunner.data.git_source import GitSource
from modelrunner.data.http_source import HttpSource
from modelrunner.data.source import FileEntry, FoundVersion, KnownVersion, Source, SourceError
from modelrunner.data.sources import open_source
from modelrunner.spec.dataset_spec import FilesDataset, GitDataset, HttpDataset
from tests import data_fixtures
from tests.conftest import free_port
from tests.data_fixtures import GIT_EPOCH, S3, GitRepo, HttpServer

# The shared fixtures this module uses; pytest finds them by these names.
git_repo = data_fixtures.git_repo
moto_server = data_fixtures.moto_server
s3 = data_fixtures.s3
http_server = data_fixtures.http_server


class Progress:
    """Records progress reports."""

    def __init__(self) -> None:
        self.reports: list[tuple[float | None, str]] = []

    def __call__(self, fraction: float | None, message: str) -> None:
        self.reports.append((fraction, message))


def discover(
    source: Source,
    staging: Path,
    known: Iterable[str] = (),
    *,
    newest: KnownVersion | None = None,
    walk_all: bool = False,
    progress: Progress | None = None,
) -> list[FoundVersion]:
    recorded = set(known)
    return source.discover(
        recorded.__contains__, newest, walk_all=walk_all, staging=staging, progress=progress or Progress()
    )


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder``: relative path -> content."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- git --------------------------------------------------------------------------------------


@pytest.fixture
def history(git_repo: GitRepo) -> dict[str, str]:
    """Five commits, three of which touch ``data``: subject -> sha."""
    shas = {}
    shas["first data"] = git_repo.commit({"data/a.csv": "x,y\n1,2\n", "README.md": "readme"}, "first data")
    shas["docs"] = git_repo.commit({"README.md": "more readme"}, "docs")
    shas["second file"] = git_repo.commit({"data/b.csv": "b\n" * 10}, "second file")
    shas["elsewhere"] = git_repo.commit({"other/x.txt": "x"}, "elsewhere")
    shas["drop a"] = git_repo.commit({"data/a.csv": None}, "drop a")
    return shas


def git_source(tmp_path: Path, repo: str, *, paths: list[str] | None = None, branch: str = "main") -> Source:
    spec = GitDataset(source="git", repo=repo, branch=branch, paths=["data"] if paths is None else paths)
    return open_source("cases", spec, workspace_root=tmp_path, state_dir=tmp_path / "state")


def test_git_finds_the_commits_that_touched_paths_newest_first(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    progress = Progress()
    found = discover(git_source(tmp_path, str(git_repo.path)), tmp_path / "staging", progress=progress)
    assert [v.version for v in found] == [history["drop a"], history["second file"], history["first data"]]
    assert [v.summary for v in found] == ["drop a", "second file", "first data"]
    assert [v.files for v in found] == [
        (FileEntry("data/b.csv", 20),),
        (FileEntry("data/a.csv", 8), FileEntry("data/b.csv", 20)),
        (FileEntry("data/a.csv", 8),),
    ]
    # Committer times, in UTC: the fixture commits one minute apart.
    assert [v.time for v in found] == [GIT_EPOCH + dt.timedelta(minutes=n) for n in (5, 3, 1)]
    assert progress.reports[0][0] is None and progress.reports[-1][0] == 1.0
    assert any("reading commit 1 of 3" in message for _, message in progress.reports)
    assert not (tmp_path / "staging").exists()  # a source with history stages nothing


def test_git_stops_at_a_known_commit_unless_asked_to_walk_all(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    source = git_source(tmp_path, str(git_repo.path))
    known = [history["second file"]]
    assert [v.version for v in discover(source, tmp_path, known)] == [history["drop a"]]
    walked = discover(source, tmp_path, known, walk_all=True)
    assert [v.version for v in walked] == [history["drop a"], history["first data"]]


def test_git_finds_a_new_commit_alone(tmp_path: Path, git_repo: GitRepo, history: dict[str, str]) -> None:
    source = git_source(tmp_path, str(git_repo.path))
    known = [v.version for v in discover(source, tmp_path)]
    git_repo.commit({"other/y.txt": "not data"}, "not data")
    assert discover(source, tmp_path, known) == []
    new = git_repo.commit({"data/c/deep.json": "{}"}, "third file")
    [found] = discover(source, tmp_path, known)
    assert (found.version, found.summary) == (new, "third file")
    assert found.files == (FileEntry("data/b.csv", 20), FileEntry("data/c/deep.json", 2))


def test_git_without_paths_takes_every_commit_and_file(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    found = discover(git_source(tmp_path, str(git_repo.path), paths=[]), tmp_path)
    assert [v.version for v in found] == list(reversed(history.values()))
    assert [f.path for f in found[0].files] == ["README.md", "data/b.csv", "other/x.txt"]


def test_git_paths_may_name_files_and_paths_missing_at_a_commit(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    source = git_source(tmp_path, str(git_repo.path), paths=["data/a.csv", "other"])
    found = discover(source, tmp_path)
    assert [v.summary for v in found] == ["drop a", "elsewhere", "first data"]
    assert [v.files for v in found] == [
        (FileEntry("other/x.txt", 1),),
        (FileEntry("data/a.csv", 8), FileEntry("other/x.txt", 1)),
        (FileEntry("data/a.csv", 8),),
    ]
    destination = tmp_path / "out"
    source.fetch(history["drop a"], destination)  # data/a.csv is gone there: only other/ is written
    assert tree(destination) == {"other/x.txt": b"x"}


def test_git_lists_files_sorted_by_path(tmp_path: Path, git_repo: GitRepo) -> None:
    # Git orders a folder's entries as if folder names ended in "/": the listing must still be sorted.
    names = ["data/a-b", "data/a/c", "data/a.txt", "data/a0", "data/a/b/d", "data/é", "data/z"]
    git_repo.commit(dict.fromkeys(names, "x"), "names")
    for paths in ([], ["data"], ["data/a", "data", "data/z"]):
        [found] = discover(git_source(tmp_path, str(git_repo.path), paths=paths), tmp_path)
        assert [f.path for f in found.files] == sorted(names)


def test_git_fetch_writes_exactly_the_files_of_that_commit(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    source = git_source(tmp_path, str(git_repo.path))
    for subject, expected in {
        "first data": {"data/a.csv": b"x,y\n1,2\n"},
        "second file": {"data/a.csv": b"x,y\n1,2\n", "data/b.csv": b"b\n" * 10},
        "drop a": {"data/b.csv": b"b\n" * 10},
    }.items():
        destination = tmp_path / "fetched" / subject
        source.fetch(history[subject], destination)
        assert tree(destination) == expected


def test_git_fetch_ignores_export_attributes(tmp_path: Path, git_repo: GitRepo) -> None:
    # `git archive` would drop export-ignore files and expand export-subst ones; a dataset must not.
    attributes = "data/hidden.csv export-ignore\ndata/subst.txt export-subst\n"
    files = {".gitattributes": attributes, "data/hidden.csv": "h", "data/subst.txt": "$Format:%H$"}
    sha = git_repo.commit(files, "attributes")
    destination = tmp_path / "out"
    git_source(tmp_path, str(git_repo.path), paths=[]).fetch(sha, destination)
    assert tree(destination) == {k: v.encode() for k, v in files.items()}


def test_git_fetch_of_an_unknown_commit_fails_clearly(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    source = git_source(tmp_path, str(git_repo.path))
    with pytest.raises(SourceError, match=f"dataset 'cases': commit {'0' * 40} not found in git repository"):
        source.fetch("0" * 40, tmp_path / "out")
    with pytest.raises(SourceError, match="'--help' is not a full commit id"):
        source.fetch("--help", tmp_path / "out")


def test_git_errors_name_the_dataset_and_what_failed(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    missing = tmp_path / "no-such-repo"
    with pytest.raises(SourceError, match=f"dataset 'cases': cannot fetch git repository {missing}: .*does not exist"):
        discover(git_source(tmp_path, str(missing)), tmp_path)
    with pytest.raises(
        SourceError, match=f"dataset 'cases': branch 'nope' not found in git repository {git_repo.path}"
    ):
        discover(git_source(tmp_path, str(git_repo.path), branch="nope"), tmp_path)
    git_repo.git("branch", "nope", history["docs"])  # a branch made later is fetched into the mirror
    assert [v.summary for v in discover(git_source(tmp_path, str(git_repo.path), branch="nope"), tmp_path)] == [
        "first data"
    ]
    no_git = GitSource("cases", str(git_repo.path), mirror=tmp_path / "m.git", git=str(tmp_path / "no-git"))
    with pytest.raises(SourceError, match="git is not installed"):
        discover(no_git, tmp_path)
    with pytest.raises(SourceError, match=r"cannot fetch git repository https://\*\*\*@127\.0\.0\.1"):
        source = GitSource("cases", f"https://user:token@127.0.0.1:{free_port()}/r.git", mirror=tmp_path / "t.git")
        discover(source, tmp_path)


def test_git_reads_a_file_url_and_a_relative_path_through_a_mirror(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    by_url = discover(git_source(tmp_path, git_repo.url), tmp_path)
    by_relative_path = discover(git_source(tmp_path, "origin"), tmp_path)  # the repo is tmp_path/origin
    assert by_url == by_relative_path and len(by_url) == 3
    mirrors = sorted((tmp_path / "state" / "data" / "git").glob("*.git"))
    assert len(mirrors) == 2
    for mirror in mirrors:
        assert subprocess.run(["git", "--git-dir", mirror, "rev-parse", "--is-bare-repository"], check=True)


def test_git_mirror_survives_a_failed_fetch_and_keeps_old_commits(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    source = git_source(tmp_path, git_repo.url)
    known = [v.version for v in discover(source, tmp_path)]
    moved = tmp_path / "moved"
    git_repo.path.rename(moved)
    with pytest.raises(SourceError, match="cannot fetch git repository"):
        discover(source, tmp_path, known)
    source.fetch(history["second file"], tmp_path / "while-away")  # the mirror still has it
    assert set(tree(tmp_path / "while-away")) == {"data/a.csv", "data/b.csv"}
    moved.rename(git_repo.path)
    # A rewritten branch: the mirror follows it, and the commit that left it stays fetchable.
    git_repo.git("reset", "--quiet", "--hard", history["second file"])
    new = git_repo.commit({"data/b.csv": "rewritten"}, "rewrite")
    assert [v.version for v in discover(source, tmp_path, known)] == [new]
    source.fetch(history["drop a"], tmp_path / "old")
    assert tree(tmp_path / "old") == {"data/b.csv": b"b\n" * 10}


def test_git_syncs_of_one_repository_at_once_share_the_mirror_safely(
    tmp_path: Path, git_repo: GitRepo, history: dict[str, str]
) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            results.append([v.version for v in discover(git_source(tmp_path, git_repo.url), tmp_path)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [[history["drop a"], history["second file"], history["first data"]]] * 4


def test_git_walks_a_long_history_quickly(tmp_path: Path, git_repo: GitRepo) -> None:
    count = 600
    fast_import(git_repo, count)
    source = git_source(tmp_path, str(git_repo.path))
    progress = Progress()
    started = time.monotonic()
    found = discover(source, tmp_path, walk_all=True, progress=progress)
    elapsed = time.monotonic() - started
    assert len(found) == count // 2  # every other commit touches data/
    assert found[0].files == tuple(FileEntry(f"data/file{n:04}.txt", len(str(n))) for n in range(0, count, 2))
    assert found[-1].files == (FileEntry("data/file0000.txt", 1),)
    assert elapsed < 5, f"walking {count} commits took {elapsed:.1f} s"


def fast_import(repo: GitRepo, count: int) -> None:
    """``count`` commits on main, alternating between a new file in data/ and one in other/."""
    stream = []
    for n in range(count):
        folder = "data" if n % 2 == 0 else "other"
        content = str(n).encode()
        stream.append(
            f"commit refs/heads/main\ncommitter T <t@example.org> {1_700_000_000 + n} +0000\n"
            f"data {len(f'commit {n}')}\ncommit {n}\n"
            f"M 100644 inline {folder}/file{n:04}.txt\ndata {len(content)}\n{content.decode()}\n"
        )
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo.path, input="".join(stream).encode(), check=True)


# -- files: S3 and a local folder ------------------------------------------------------------------


def files_source(tmp_path: Path, url: str, options: dict[str, str] | None = None) -> Source:
    spec = FilesDataset(source="files", url=url, options=options or {})
    return open_source("inputs", spec, workspace_root=tmp_path, state_dir=tmp_path / "state")


def test_s3_version_follows_the_content(tmp_path: Path, s3: S3) -> None:
    bucket = s3.create_bucket()
    s3.put(bucket, "cases/2024/a.csv", "a,b\n1,2\n")
    s3.put(bucket, "cases/b.bin", bytes(range(256)))
    s3.put(bucket, "other/ignored.txt", "not under the prefix")
    source = files_source(tmp_path, f"s3://{bucket}/cases", s3.options)
    progress = Progress()
    [first] = discover(source, tmp_path / "staging", progress=progress)
    assert first.files == (FileEntry("2024/a.csv", 8), FileEntry("b.bin", 256))
    assert tree(tmp_path / "staging" / first.version) == {
        "2024/a.csv": s3.read(bucket, "cases/2024/a.csv"),
        "b.bin": s3.read(bucket, "cases/b.bin"),
    }
    assert abs((first.time - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    assert progress.reports[0][0] is None and progress.reports[-1][0] == 1.0
    # Nothing changed: the same version, which is known.
    assert discover(source, tmp_path / "again", [first.version]) == []
    assert not (tmp_path / "again").exists()
    [same] = discover(source, tmp_path / "again")
    assert same.version == first.version
    # A changed file makes a new version.
    s3.put(bucket, "cases/b.bin", b"changed")
    [second] = discover(source, tmp_path / "second", [first.version])
    assert second.version != first.version
    assert tree(tmp_path / "second" / second.version)["b.bin"] == b"changed"
    s3.delete(bucket, "cases/b.bin")
    [third] = discover(source, tmp_path / "third", [first.version, second.version])
    assert third.files == (FileEntry("2024/a.csv", 8),)


def test_s3_missing_bucket_and_empty_prefix_fail_clearly(tmp_path: Path, s3: S3) -> None:
    with pytest.raises(SourceError, match="dataset 'inputs': bucket 'no-such-bucket' missing"):
        discover(files_source(tmp_path, "s3://no-such-bucket/x", s3.options), tmp_path)
    bucket = s3.create_bucket()
    s3.put(bucket, "elsewhere/a.txt", "a")
    with pytest.raises(SourceError, match=f"dataset 'inputs': no files under s3://{bucket}/empty") as raised:
        discover(files_source(tmp_path, f"s3://{bucket}/empty", s3.options), tmp_path)
    assert s3.endpoint_url not in str(raised.value)
    with pytest.raises(SourceError, match="keeps no history"):
        files_source(tmp_path, f"s3://{bucket}/elsewhere", s3.options).fetch("0" * 64, tmp_path / "out")


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_local_folder_version_follows_the_content(tmp_path: Path, as_url: bool) -> None:
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.txt").write_text("beta")
    source = files_source(tmp_path, folder.as_uri() if as_url else "inputs")  # relative to the workspace
    [first] = discover(source, tmp_path / "staging")
    assert first.files == (FileEntry("a.txt", 5), FileEntry("sub/b.txt", 4))
    assert tree(tmp_path / "staging" / first.version) == tree(folder)
    assert discover(source, tmp_path / "again", [first.version]) == []
    (folder / "a.txt").write_text("gamma")  # same size: the content hash tells the change
    [second] = discover(source, tmp_path / "second", [first.version])
    assert second.version != first.version
    assert tree(tmp_path / "second" / second.version) == tree(folder)


def test_local_folder_missing_or_empty_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"dataset 'inputs': folder .*nowhere missing"):
        discover(files_source(tmp_path, "nowhere"), tmp_path)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(SourceError, match=r"dataset 'inputs': no files under .*empty"):
        discover(files_source(tmp_path, "empty"), tmp_path)


def test_files_changed_while_read_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    source = FilesSource("inputs", str(folder))

    def progress(fraction: float | None, message: str) -> None:
        if message.startswith("copying"):
            (folder / "late.txt").write_text("arrived during the copy")

    with pytest.raises(SourceError, match="changed while it was being read; try again"):
        source.discover(lambda _: False, None, walk_all=False, staging=tmp_path / "staging", progress=progress)


# -- http -------------------------------------------------------------------------------------


def http_source(tmp_path: Path, url: str) -> Source:
    return open_source("feed", HttpDataset(source="http", url=url), workspace_root=tmp_path, state_dir=tmp_path)


def test_http_finds_a_version_then_uses_conditional_requests(tmp_path: Path, http_server: HttpServer) -> None:
    served = http_server.write("feeds/cases.csv", "a,b\n1,2\n")
    source = http_source(tmp_path, http_server.url("feeds/cases.csv"))
    progress = Progress()
    [first] = discover(source, tmp_path / "staging", progress=progress)
    assert first.version == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert first.files == (FileEntry("cases.csv", 8),)
    assert tree(tmp_path / "staging") == {f"{first.version}/cases.csv": b"a,b\n1,2\n"}  # no partial file left
    assert set(first.meta) == {"etag", "last_modified"}
    assert first.time == parsedate_to_datetime(first.meta["last_modified"])
    assert progress.reports[0][0] is None and progress.reports[-1][0] == 1.0

    newest = KnownVersion(first.version, first.meta)
    assert discover(source, tmp_path / "again", [first.version], newest=newest) == []
    assert http_server.statuses("feeds/cases.csv") == [200, 304]
    # Without the validators, the unchanged body is recognised by its hash.
    assert discover(source, tmp_path / "again", [first.version]) == []
    assert http_server.statuses("feeds/cases.csv") == [200, 304, 200]
    assert tree(tmp_path / "again") == {}

    served.write_text("a,b\n3,4\n")
    [second] = discover(source, tmp_path / "second", [first.version], newest=newest)
    assert second.version == hashlib.sha256(b"a,b\n3,4\n").hexdigest()
    assert second.meta["etag"] != first.meta["etag"]
    assert (tmp_path / "second" / second.version / "cases.csv").read_bytes() == b"a,b\n3,4\n"


def test_http_url_without_a_file_name_is_saved_as_data(tmp_path: Path, http_server: HttpServer) -> None:
    http_server.write("index.html", "<p>hello</p>")
    [found] = discover(http_source(tmp_path, http_server.url("/")), tmp_path)
    assert found.files == (FileEntry("data", 12),)


def test_http_errors_name_the_status_without_the_query(tmp_path: Path, http_server: HttpServer) -> None:
    url = http_server.url("missing.csv?token=s3cret")
    with pytest.raises(SourceError, match=r"dataset 'feed': http://127\.0\.0\.1:\d+/missing\.csv answered HTTP 404"):
        discover(http_source(tmp_path, url), tmp_path)
    with pytest.raises(SourceError) as raised:
        discover(http_source(tmp_path, url.replace("http://", "http://user:pa55@")), tmp_path)
    assert "s3cret" not in str(raised.value) and "pa55" not in str(raised.value)
    http_server.fail("broken.csv", 500)
    with pytest.raises(SourceError, match=r"broken\.csv answered HTTP 500 Internal Server Error"):
        discover(http_source(tmp_path, http_server.url("broken.csv")), tmp_path)
    http_server.write("slow.csv", "slow")
    http_server.delay("slow.csv", 0.5)
    with pytest.raises(SourceError, match=r"slow\.csv gave no answer within 0\.1 s"):
        discover(HttpSource("feed", http_server.url("slow.csv"), timeout=0.1), tmp_path)
    port = free_port()
    with pytest.raises(SourceError, match=f"dataset 'feed': cannot read http://127.0.0.1:{port}/x.csv: ConnectError"):
        discover(http_source(tmp_path, f"http://127.0.0.1:{port}/x.csv?token=s3cret"), tmp_path)
    with pytest.raises(SourceError, match="keeps no history"):
        http_source(tmp_path, url).fetch("0" * 64, tmp_path / "out")


def test_sources_report_whether_they_keep_history(tmp_path: Path) -> None:
    assert git_source(tmp_path, "x").keeps_history is True
    assert files_source(tmp_path, "x").keeps_history is False
    assert http_source(tmp_path, "http://127.0.0.1/x").keeps_history is False
    assert isinstance(http_source(tmp_path, "http://127.0.0.1/x"), HttpSource)

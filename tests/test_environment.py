"""What a run was measured on: tool versions, the commit, and the SUT's identity."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conductor_perf import environment
from conductor_perf.environment import SutIdentity


def test_tool_versions_reports_missing_distributions_as_none():
    assert environment.tool_versions({"nothing": "no-such-distribution-xyz"}) == {"nothing": None}


def test_repo_commit_tolerates_no_git_and_reports_dirty(tmp_path):
    assert environment.repo_commit(tmp_path) == {"sha": None, "dirty": None}
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    (tmp_path / "f").write_text("1")
    for cmd in (["git", "init", "-q"], ["git", "add", "f"], ["git", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=env, timeout=30)
    clean = environment.repo_commit(tmp_path)
    assert len(clean["sha"]) == 40 and clean["dirty"] is False
    (tmp_path / "f").write_text("2")
    assert environment.repo_commit(tmp_path)["dirty"] is True




def test_sut_identity_is_kind_version_and_binary_hash():
    described = {"kind": "external", "url": "http://127.0.0.1:14355/", "root": None,
                 "version": "0.76.0-SNAPSHOT-ce73c6a", "pid": None}  # fmt: skip
    ident = SutIdentity.of(described)
    assert ident == SutIdentity("external", "0.76.0-SNAPSHOT-ce73c6a")
    assert str(ident) == "external conductor 0.76.0-SNAPSHOT-ce73c6a"
    assert SutIdentity.of({**described, "url": "http://127.0.0.1:1/", "pid": 4}) == ident  # where it ran is not who
    binary = SutIdentity.of({**described, "kind": "binary", "binary_sha256": "F7ED51" + "a" * 58})
    assert binary.binary_sha256 == "f7ed51" + "a" * 58
    assert str(binary) == "binary conductor 0.76.0-SNAPSHOT-ce73c6a (sha256 f7ed51aaaaaa)"
    assert binary.to_dict() == {"kind": "binary", "version": "0.76.0-SNAPSHOT-ce73c6a",
                                "binary_sha256": "f7ed51" + "a" * 58}  # fmt: skip


def test_a_sut_without_identity_reads_as_the_embedded_conductor_of_unknown_version():
    for sut in (None, {}, {"kind": None, "url": None, "version": None, "root": None}):
        assert SutIdentity.of(sut) == SutIdentity("embedded", environment.UNKNOWN_VERSION)
    assert str(SutIdentity.of(None)) == "embedded conductor version unknown"

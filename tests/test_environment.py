"""What a run was measured on: tool versions, the commit, and the SUT's identity."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conductor_perf import environment


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



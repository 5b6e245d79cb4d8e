"""python/README.md's examples run as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

import tokenstore.mxcp

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_examples() -> None:
    found = blocks()
    assert len(found) == 2
    assert "tokenstore.mxcp.install" in found[0]
    assert "async def main" in found[1]


@pytest.mark.asyncio
async def test_direct_use_example_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # it opens "oauth.db" in the working directory
    namespace: dict = {}
    exec(compile(blocks()[1], str(README), "exec"), namespace)
    await namespace["main"](Fernet.generate_key().decode())
    assert (tmp_path / "oauth.db").exists()


def test_mxcp_example_installs_and_starts_mxcps_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    # The example ends by handing over to mxcp's command line; `--help` makes
    # that return at once instead of serving.
    monkeypatch.setattr(sys, "argv", ["mxcp", "--help"])
    monkeypatch.setenv("MXCP_DISABLE_ANALYTICS", "1")
    try:
        with pytest.raises(SystemExit) as exit_:
            exec(compile(blocks()[0], str(README), "exec"), {})
        assert exit_.value.code in (0, None)
        assert tokenstore.mxcp.installed()
        import mxcp.server.interfaces.server.mcp as mcp

        built = mcp.SqliteTokenStore(tmp_path / "never-opened.db", Fernet.generate_key())
        assert isinstance(built, tokenstore.CachingTokenStore)
        assert isinstance(built.inner, tokenstore.SqliteTokenStore)
    finally:
        tokenstore.mxcp.uninstall()
    assert not tokenstore.mxcp.installed()
    assert "Usage" in capsys.readouterr().out

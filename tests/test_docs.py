"""The README's and general docs pages' examples run (feature pages test their own examples beside their tests)."""

import pytest

from docs_examples import REPO, run_markdown_examples


@pytest.mark.parametrize("page", ["README.md", "docs/loading.md"])
def test_examples_run(page, monkeypatch):
    monkeypatch.chdir(REPO)
    run_markdown_examples(REPO / page)

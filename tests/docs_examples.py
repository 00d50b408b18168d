"""Run the ```python blocks of a markdown page in order, in one namespace, so documented examples stay true."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def run_markdown_examples(page: Path, namespace: dict | None = None) -> dict:
    """Execute every ```python block of `page`; returns the namespace. Fails if the page has none."""
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python examples"
    namespace = {} if namespace is None else namespace
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)
    return namespace

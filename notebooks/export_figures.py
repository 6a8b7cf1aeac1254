"""``make figures``: run every notebook on the demo output and save its first figure
as ``docs/<notebook>.png`` (the images the README shows)."""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parent
DOCS = NOTEBOOKS.parent / "docs"


def first_figure(path: Path) -> bytes:
    """The PNG bytes of the first figure ``path`` draws when run top to bottom."""
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    for cell in book.cells:
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                return base64.b64decode(output["data"]["image/png"])
    raise SystemExit(f"{path.name} drew no figure")


def main() -> None:
    """Write ``docs/<name>.png`` for every notebook."""
    DOCS.mkdir(exist_ok=True)
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        target = DOCS / f"{path.stem}.png"
        target.write_bytes(first_figure(path))
        print(f"wrote {target}")


if __name__ == "__main__":
    main()

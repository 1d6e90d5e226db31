"""``python -m examples.litestar_cart``: serve the Litestar cart over an embedded sqlite store."""

from __future__ import annotations

import argparse

import uvicorn

from storage import create_storage

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The unistorage sessions cart on Litestar.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--store", default="sqlite:///.data/litestar-cart.db")
    args = parser.parse_args(argv)
    app = create_app(create_storage(args.store), secure=False)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""``python -m examples.cart``: serve the cart on localhost over an embedded sqlite store."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from storage import create_storage

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The unistorage sessions cart example.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--store",
        default="sqlite:///.data/cart.db",
        help="driver URL for sessions (default: %(default)s)",
    )
    parser.add_argument(
        "--secure", action="store_true", help="mark the cookie Secure (when served over https)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    app = create_app(create_storage(args.store), secure=args.secure)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

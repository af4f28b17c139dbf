"""Command line: `python -m spaces build OUT_DIR` and `python -m spaces push OWNER/NAME`."""
from __future__ import annotations

import argparse
import sys

from spaces import metadata


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spaces",
                                     description="Turn this repo into a Hugging Face Space.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write a complete Space repo into OUT_DIR")
    build.add_argument("out_dir", metavar="OUT_DIR")
    push = sub.add_parser("push", help="build and upload to the Hub (token: HF_TOKEN or `hf auth login`)")
    push.add_argument("repo_id", metavar="OWNER/NAME")
    push.add_argument("--private", action="store_true", help="create the Space as private")
    push.add_argument("--folder", help="upload this earlier build instead of building now")
    for command in (build, push):
        command.add_argument("--hardware", default=metadata.DEFAULT_HARDWARE,
                             help=f"hardware it is meant for: suggested_hardware and the torch build "
                                  f"(default {metadata.DEFAULT_HARDWARE}; cpu-basic for a CPU Space)")
        command.add_argument("--model", default=metadata.DEFAULT_MODEL,
                             help=f"default model, linked and preloaded (default {metadata.DEFAULT_MODEL})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from spaces.build import BuildError, BuildOptions, build
    from spaces.push import PushError, push

    options = BuildOptions(model=args.model, hardware=args.hardware)
    try:
        if args.command == "build":
            out = build(args.out_dir, options)
            print(f"Space written to {out} ({options.hardware}, {options.model})")
        else:
            url = push(args.repo_id, private=args.private, options=options, folder=args.folder)
            print(f"pushed: {url}\nSpace: https://huggingface.co/spaces/{args.repo_id}")
    except (BuildError, PushError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

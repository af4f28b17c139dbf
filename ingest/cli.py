"""``python -m ingest``: manage the voice library from the command line.

    python -m ingest add clip.m4a --name "Ada" [--transcript "..."] [--language en]
    python -m ingest import DIR|ARCHIVE.zip [--replace]
    python -m ingest export ID DIR          python -m ingest export-all LIBRARY.zip
    python -m ingest list [--json]          python -m ingest show ID [--json]
    python -m ingest edit ID [--name ..] [--transcript ..] ...
    python -m ingest set-default ID         python -m ingest delete ID
    python -m ingest sync                   # $TTS_VOICES_DIR / $TTS_DEFAULT_VOICE

Every command takes ``--data-dir DIR`` (else ``$VOICE_DATA_DIR``, else ``./data``).
Refusals print one line on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from voices_db import LibraryError, Voice, VoiceStore, resolve_data_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ingest", description="Manage the voice library.")
    parser.add_argument("--data-dir", help="library folder (default: $VOICE_DATA_DIR, else ./data)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help="library folder")
    sub = parser.add_subparsers(dest="command", required=True)

    add = sub.add_parser("add", parents=[common], help="ingest a clip as a new voice")
    add.add_argument("file", type=Path)
    add.add_argument("--name", required=True)
    add.add_argument("--transcript", help="what the clip says (skips speech recognition)")
    add.add_argument("--transcript-file", type=Path, help="read the transcript from a UTF-8 file")
    add.add_argument("--language", help="language of the clip (code or name)")
    add.add_argument("--description", default="")
    add.add_argument("--tag", action="append", default=[], help="repeatable")
    add.add_argument("--id", dest="voice_id", help="explicit voice id (default: from the name)")
    add.add_argument("--whisper-model", help="Whisper model name or folder ($VOICE_WHISPER_MODEL)")
    add.add_argument("--json", action="store_true")

    imp = sub.add_parser("import", parents=[common], help="import a voice folder, a folder of them, or a library archive")
    imp.add_argument("path", type=Path)
    imp.add_argument("--replace", action="store_true", help="overwrite voices with the same id")
    imp.add_argument("--whisper-model")

    exp = sub.add_parser("export", parents=[common], help="write a voice folder DIR/<id>/")
    exp.add_argument("voice_id")
    exp.add_argument("dest", type=Path)
    exp_all = sub.add_parser("export-all", parents=[common], help="write the whole library as one .zip")
    exp_all.add_argument("archive", type=Path)

    lst = sub.add_parser("list", parents=[common], help="list voices")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--limit", type=int, default=0, help="one page of this size (0: all)")
    lst.add_argument("--cursor", help="next_cursor of the previous page")
    show = sub.add_parser("show", parents=[common], help="show one voice")
    show.add_argument("voice_id")
    show.add_argument("--json", action="store_true")

    edit = sub.add_parser("edit", parents=[common], help="edit a voice's metadata")
    edit.add_argument("voice_id")
    for name in ("name", "transcript", "description", "language"):
        edit.add_argument(f"--{name}")
    edit.add_argument("--tags", help="comma-separated; replaces the tags")
    edit.add_argument("--json", action="store_true")

    for name, text in (("set-default", "make a voice the default"), ("delete", "delete a voice and its files")):
        cmd = sub.add_parser(name, parents=[common], help=text)
        cmd.add_argument("voice_id")
    sub.add_parser("sync", parents=[common], help="import/refresh $TTS_VOICES_DIR, apply $TTS_DEFAULT_VOICE")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with VoiceStore(resolve_data_dir(args.data_dir)) as store:
            return COMMANDS[args.command](store, args)
    except LibraryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"error: file not found: {exc.filename}", file=sys.stderr)
        return 1


def _transcriber(args):
    from ingest.transcribe import Transcriber

    return Transcriber(getattr(args, "whisper_model", None))


def cmd_add(store: VoiceStore, args) -> int:
    from ingest.library import add_voice

    transcript = args.transcript
    if args.transcript_file is not None:
        transcript = args.transcript_file.read_text(encoding="utf-8")
    if not args.file.is_file():
        raise FileNotFoundError(2, "no such file", str(args.file))
    voice = add_voice(store, args.file, args.name, transcript=transcript, language=args.language,
                      description=args.description, tags=args.tag, transcriber=_transcriber(args),
                      voice_id=args.voice_id)
    _print_voice(voice, args.json)
    return 0


def cmd_import(store: VoiceStore, args) -> int:
    from ingest.archive import import_library
    from ingest.folders import import_voice

    path: Path = args.path
    if path.is_file():
        results = import_library(store, path, replace=args.replace, transcriber=_transcriber(args))
    elif (path / "manifest.json").is_file():
        results = [import_voice(store, path, replace=args.replace, transcriber=_transcriber(args))]
    elif path.is_dir():
        folders = sorted(p for p in path.iterdir() if (p / "manifest.json").is_file())
        if not folders:
            raise LibraryError(f"{path} holds no voice folder (no manifest.json found)")
        transcriber = _transcriber(args)
        results = [import_voice(store, f, replace=args.replace, transcriber=transcriber) for f in folders]
    else:
        raise FileNotFoundError(2, "no such file or folder", str(path))
    for result in results:
        print(f"{result.action}\t{result.voice.id}\t{result.voice.name}")
    return 0


def cmd_export(store: VoiceStore, args) -> int:
    from ingest.folders import export_voice

    print(export_voice(store, args.voice_id, args.dest))
    return 0


def cmd_export_all(store: VoiceStore, args) -> int:
    from ingest.archive import export_library

    print(export_library(store, args.archive))
    return 0


def cmd_list(store: VoiceStore, args) -> int:
    if args.limit:
        page = store.list_page(args.limit, args.cursor)
        voices, cursor = page.items, page.next_cursor
    else:
        voices, cursor = list(store.iter_all()), None
    if args.json:
        print(json.dumps({"voices": [v.to_dict() for v in voices], "next_cursor": cursor}, indent=1, ensure_ascii=False))
        return 0
    if not voices:
        print("the library is empty: add a first voice with `python -m ingest add CLIP --name NAME`")
    for v in voices:
        print(f"{'*' if v.is_default else ' '} {v.id:<24} {v.name:<24} {v.duration:5.1f}s  {v.language or '-':<4} "
              f"{len(v.warnings)} warning(s)")
    if cursor:
        print(f"more: --cursor {cursor}")
    return 0


def cmd_show(store: VoiceStore, args) -> int:
    _print_voice(store.get(args.voice_id), args.json)
    return 0


def cmd_edit(store: VoiceStore, args) -> int:
    fields = ("name", "transcript", "description", "language")
    changes = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    if args.tags is not None:
        changes["tags"] = args.tags
    if "transcript" in changes:
        changes["transcript_source"] = "user"
    _print_voice(store.update_voice(args.voice_id, **changes), args.json)
    return 0


def cmd_set_default(store: VoiceStore, args) -> int:
    print(f"default voice: {store.set_default(args.voice_id).id}")
    return 0


def cmd_delete(store: VoiceStore, args) -> int:
    store.delete_voice(args.voice_id)
    print(f"deleted {args.voice_id}")
    return 0


def cmd_sync(store: VoiceStore, args) -> int:
    from ingest.archive import sync_from_environment

    report = sync_from_environment(store)
    for voice_id, action in report.actions:
        print(f"{action}\t{voice_id}")
    for where, message in report.errors:
        print(f"error: {where}: {message}", file=sys.stderr)
    print(f"default voice: {report.default_voice or '(none: the library is empty)'}")
    return 1 if report.errors else 0


def _print_voice(voice: Voice, as_json: bool) -> None:
    if as_json:
        print(json.dumps(voice.to_dict(), indent=1, ensure_ascii=False))
        return
    for key in ("id", "name", "language", "duration", "loudness_dbfs", "transcript", "transcript_source",
                "audio_file", "is_default", "created_at"):
        print(f"{key:>17}: {getattr(voice, key)}")
    for warning in voice.warnings:
        print(f"{'warning':>17}: {warning['message']}")


COMMANDS = {
    "add": cmd_add, "import": cmd_import, "export": cmd_export, "export-all": cmd_export_all,
    "list": cmd_list, "show": cmd_show, "edit": cmd_edit, "set-default": cmd_set_default,
    "delete": cmd_delete, "sync": cmd_sync,
}

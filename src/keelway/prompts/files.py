"""Read and write a folder of prompt YAML files, one prompt per file.

A folder in a Git repository keeps prompts under review: ``NAME.yaml`` contains
the canonical YAML of prompt ``NAME`` (see ``dump_prompt_yaml``).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from keelway.prompts.content import (
    PromptContent,
    dump_prompt_yaml,
    parse_prompt_yaml,
    validate_prompt_name,
)
from keelway.prompts.errors import InvalidPrompt

SUFFIXES = (".yaml", ".yml")


def read_folder(path: Path) -> dict[str, PromptContent]:
    """Read every ``*.yaml`` and ``*.yml`` file directly in ``path``.

    Hidden files and subfolders are skipped. Each file's ``name`` must equal
    its file name without the suffix. Raises InvalidPrompt, starting with the
    file name, for a missing folder, undecodable UTF-8, invalid content or two
    files that define the same prompt. Other I/O errors propagate as OSError.
    """
    if not path.exists():
        raise InvalidPrompt(
            f"prompt folder {str(path)!r} not found; create it or pass an "
            "existing folder"
        )
    if not path.is_dir():
        raise InvalidPrompt(f"{str(path)!r} is a file, not a prompt folder")
    prompts: dict[str, PromptContent] = {}
    files: dict[str, str] = {}
    for file in sorted(path.iterdir()):
        if file.name.startswith(".") or file.suffix not in SUFFIXES:
            continue
        if not file.is_file():
            continue
        try:
            # utf-8-sig accepts the byte order mark some Windows editors add.
            text = file.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidPrompt(
                f"not valid UTF-8 at byte {exc.start}; save the file as UTF-8",
                where=file.name,
            ) from None
        name, content = parse_prompt_yaml(text, file.name)
        if name != file.stem:
            raise InvalidPrompt(
                f"the prompt name {name!r} does not match the file name; rename "
                f"the file to {name}{file.suffix} or set name: {file.stem}",
                where=file.name,
            )
        if name in files:
            raise InvalidPrompt(
                f"prompt {name!r} is also defined in {files[name]}; remove one of "
                "the two files",
                where=file.name,
            )
        files[name] = file.name
        prompts[name] = content
    return prompts


def write_folder(path: Path, prompts: Mapping[str, PromptContent]) -> list[Path]:
    """Write each prompt to ``NAME.yaml`` in ``path`` and return the files written.

    Creates the folder if needed. A file whose bytes would not change is left
    alone, and other files are never deleted. A prompt that already has a
    ``NAME.yml`` file (and no ``NAME.yaml``) is written there, so that the
    folder does not end up with two files for one prompt. Every name and
    content is dumped before the first write, so an invalid one writes
    nothing. Each file is replaced atomically.
    """
    if path.exists() and not path.is_dir():
        raise InvalidPrompt(f"{str(path)!r} is a file, not a prompt folder")
    encoded: dict[str, bytes] = {}
    for name in sorted(prompts):
        validate_prompt_name(name)
        encoded[name] = dump_prompt_yaml(name, prompts[name]).encode("utf-8")
    path.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in encoded.items():
        target = path / f"{name}.yaml"
        alternative = path / f"{name}.yml"
        if not target.exists() and alternative.is_file():
            target = alternative
        if target.is_file() and target.read_bytes() == data:
            continue
        _replace_file(target, data)
        written.append(target)
    return written


def _replace_file(target: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temporary file next to ``target``, then
    rename it over ``target``, keeping the old file's permissions."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    # Mode 0o666 lets the umask set the permissions of a new file, as a plain
    # open() would, where tempfile would use 0o600.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if target.exists():
            os.chmod(temporary, stat.S_IMODE(target.stat().st_mode))
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise

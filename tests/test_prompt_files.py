"""Prompt folders on disk: reading, canonical writing and the golden fixtures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keelway.prompts.content import PromptContent, dump_prompt_yaml
from keelway.prompts.errors import InvalidPrompt, InvalidReference
from keelway.prompts.files import read_folder, write_folder

GOLDEN = Path(__file__).parent / "fixtures" / "prompts"

HELLO = PromptContent.from_dict(
    {
        "variables": {"who": "string"},
        "messages": [{"role": "user", "content": "Hello {{ who }}"}],
    }
)


def write_text(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8"))


def prompt_yaml(name: str) -> str:
    return dump_prompt_yaml(name, HELLO)


# Golden folder


def test_golden_round_trip_bytes(tmp_path: Path) -> None:
    write_folder(tmp_path, read_folder(GOLDEN))
    for source in sorted(GOLDEN.glob("*.yaml")):
        assert (tmp_path / source.name).read_bytes() == source.read_bytes(), source.name


def test_golden_round_trip_files(tmp_path: Path) -> None:
    write_folder(tmp_path, read_folder(GOLDEN))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        path.name for path in GOLDEN.iterdir()
    )


def test_golden_files_canonical() -> None:
    for name, content in read_folder(GOLDEN).items():
        expected = (GOLDEN / f"{name}.yaml").read_text(encoding="utf-8")
        assert dump_prompt_yaml(name, content) == expected, name


def test_golden_names() -> None:
    assert sorted(read_folder(GOLDEN)) == [
        "extract-invoice",
        "greeting-multilingual",
        "summarize",
        "support-chat",
    ]


def test_golden_few_shot_roles() -> None:
    content = read_folder(GOLDEN)["support-chat"]
    roles = [message.role for message in content.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]


def test_golden_typed_variables() -> None:
    content = read_folder(GOLDEN)["summarize"]
    assert {variable.type for variable in content.variables} == {
        "string",
        "integer",
        "number",
        "boolean",
        "array",
        "object",
    }


def test_golden_tools_and_format() -> None:
    model = read_folder(GOLDEN)["extract-invoice"].model
    assert model.tools is not None
    assert model.response_format is not None


def test_golden_unicode() -> None:
    content = read_folder(GOLDEN)["greeting-multilingual"]
    assert "こんにちは" in content.messages[0].content


# read_folder


def test_read_folder_yaml_and_yml(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yaml", prompt_yaml("a"))
    write_text(tmp_path / "b.yml", prompt_yaml("b"))
    assert read_folder(tmp_path) == {"a": HELLO, "b": HELLO}


def test_read_folder_skips_other_files(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yaml", prompt_yaml("a"))
    write_text(tmp_path / ".hidden.yaml", "not: [valid")
    write_text(tmp_path / "notes.txt", "text")
    write_text(tmp_path / "a.yaml.bak", "text")
    (tmp_path / "sub.yaml").mkdir()
    write_text(tmp_path / "sub.yaml" / "c.yaml", prompt_yaml("c"))
    assert list(read_folder(tmp_path)) == ["a"]


def test_read_folder_empty(tmp_path: Path) -> None:
    assert read_folder(tmp_path) == {}


def test_read_folder_accepts_bom(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(
        b"\xef\xbb\xbf" + prompt_yaml("a").encode("utf-8")
    )
    assert read_folder(tmp_path) == {"a": HELLO}


def test_read_folder_crlf(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yaml", prompt_yaml("a").replace("\n", "\r\n"))
    assert read_folder(tmp_path) == {"a": HELLO}


def test_read_folder_name_mismatch(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yaml", prompt_yaml("b"))
    with pytest.raises(InvalidPrompt) as caught:
        read_folder(tmp_path)
    assert str(caught.value) == (
        "a.yaml: the prompt name 'b' does not match the file name; rename the "
        "file to b.yaml or set name: a"
    )


def test_read_folder_duplicate_name(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yaml", prompt_yaml("a"))
    write_text(tmp_path / "a.yml", prompt_yaml("a"))
    with pytest.raises(InvalidPrompt) as caught:
        read_folder(tmp_path)
    assert str(caught.value) == (
        "a.yml: prompt 'a' is also defined in a.yaml; remove one of the two files"
    )


def test_read_folder_invalid_content(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yaml", "name: a\nmessages: []\n")
    with pytest.raises(InvalidPrompt) as caught:
        read_folder(tmp_path)
    assert str(caught.value) == "a.yaml: messages: must contain at least one message"


def test_read_folder_invalid_yaml(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yaml", "name: a\nmessages: [\n")
    with pytest.raises(InvalidPrompt) as caught:
        read_folder(tmp_path)
    assert str(caught.value).startswith("a.yaml: invalid YAML at line ")


def test_read_folder_invalid_utf8(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"name: a\ndescription: caf\xe9\n")
    with pytest.raises(InvalidPrompt) as caught:
        read_folder(tmp_path)
    assert (
        str(caught.value)
        == "a.yaml: not valid UTF-8 at byte 24; save the file as UTF-8"
    )


def test_read_folder_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InvalidPrompt) as caught:
        read_folder(missing)
    assert str(caught.value) == (
        f"prompt folder {str(missing)!r} not found; create it or pass an "
        "existing folder"
    )


def test_read_folder_is_file(tmp_path: Path) -> None:
    file = tmp_path / "a.yaml"
    write_text(file, prompt_yaml("a"))
    with pytest.raises(InvalidPrompt) as caught:
        read_folder(file)
    assert str(caught.value) == f"{str(file)!r} is a file, not a prompt folder"


# write_folder


def test_write_folder_creates_folder(tmp_path: Path) -> None:
    folder = tmp_path / "nested" / "prompts"
    assert write_folder(folder, {"a": HELLO}) == [folder / "a.yaml"]


def test_write_folder_canonical_bytes(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": HELLO})
    assert (tmp_path / "a.yaml").read_bytes() == prompt_yaml("a").encode("utf-8")


def test_write_folder_lf_endings(tmp_path: Path) -> None:
    content = PromptContent.from_dict(
        {"messages": [{"role": "user", "content": "one\ntwo\n"}]}
    )
    write_folder(tmp_path, {"a": content})
    assert b"\r" not in (tmp_path / "a.yaml").read_bytes()


def test_write_folder_skips_unchanged(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": HELLO, "b": HELLO})
    changed = PromptContent.from_dict(
        {
            "variables": {"who": "string"},
            "messages": [{"role": "user", "content": "Hi {{ who }}"}],
        }
    )
    assert write_folder(tmp_path, {"a": HELLO, "b": changed}) == [tmp_path / "b.yaml"]


def test_write_folder_unchanged_file_untouched(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": HELLO})
    inode = (tmp_path / "a.yaml").stat().st_ino
    write_folder(tmp_path, {"a": HELLO})
    assert (tmp_path / "a.yaml").stat().st_ino == inode


def test_write_folder_replaces_changed_file(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yaml", "old text")
    write_folder(tmp_path, {"a": HELLO})
    assert (tmp_path / "a.yaml").read_text(encoding="utf-8") == prompt_yaml("a")


def test_write_folder_keeps_other_files(tmp_path: Path) -> None:
    write_text(tmp_path / "other.yaml", prompt_yaml("other"))
    write_text(tmp_path / "README.md", "notes")
    write_folder(tmp_path, {"a": HELLO})
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "README.md",
        "a.yaml",
        "other.yaml",
    ]


def test_write_folder_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": HELLO, "b": HELLO})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.yaml", "b.yaml"]


def test_write_folder_uses_existing_yml(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yml", "name: a\nmessages: [{role: user, content: Old}]\n")
    assert write_folder(tmp_path, {"a": HELLO}) == [tmp_path / "a.yml"]


def test_write_folder_yml_reads_back(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yml", "name: a\nmessages: [{role: user, content: Old}]\n")
    write_folder(tmp_path, {"a": HELLO})
    assert read_folder(tmp_path) == {"a": HELLO}


def test_write_folder_keeps_permissions(tmp_path: Path) -> None:
    write_text(tmp_path / "a.yaml", "old text")
    os.chmod(tmp_path / "a.yaml", 0o640)
    write_folder(tmp_path, {"a": HELLO})
    assert stat.S_IMODE((tmp_path / "a.yaml").stat().st_mode) == 0o640


def test_write_folder_invalid_name_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidReference):
        write_folder(tmp_path, {"a": HELLO, "bad/name": HELLO})
    assert list(tmp_path.iterdir()) == []


def test_write_folder_path_is_file(tmp_path: Path) -> None:
    file = tmp_path / "file"
    write_text(file, "x")
    with pytest.raises(InvalidPrompt) as caught:
        write_folder(file, {"a": HELLO})
    assert str(caught.value) == f"{str(file)!r} is a file, not a prompt folder"


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    prompts = read_folder(GOLDEN)
    write_folder(tmp_path, prompts)
    assert read_folder(tmp_path) == prompts

"""Tests for airctrl.secure and ``airctrl decrypt``: encrypted files on real disk."""

from __future__ import annotations

import gzip
import json
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from airctrl.cli import main
from airctrl.errors import ConfigError
from airctrl.secure import (
    KEY_ENV_VAR,
    DecryptionError,
    LineCipher,
    load_cipher,
    open_encrypted_writer,
    read_lines,
    write_key_file,
)
from airctrl.sinks import JsonlEventSink

LINES = ["first line", '{"emotion": "happy", "confidence": 0.91}', "ünïcødé ✓", ""]


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)


@pytest.fixture()
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "events.key"
    write_key_file(path)
    return path


def _write(path: Path, cipher: LineCipher, lines: list[str]) -> None:
    with open_encrypted_writer(path, cipher) as handle:
        for line in lines:
            handle.write(line + "\n")


def test_encrypted_file_round_trips_and_holds_no_plain_text(
    tmp_path: Path, key_file: Path
) -> None:
    cipher = load_cipher(key_file, environ={})
    path = tmp_path / "events.jsonl.enc"
    _write(path, cipher, LINES[:3])

    raw = path.read_bytes()
    assert b"happy" not in raw and b"first" not in raw
    assert len(raw.splitlines()) == 3
    assert list(read_lines(path, cipher)) == LINES[:3]


def test_writer_encrypts_partial_last_line_on_close(
    tmp_path: Path, key_file: Path
) -> None:
    cipher = load_cipher(key_file, environ={})
    path = tmp_path / "partial.enc"
    with open_encrypted_writer(path, cipher) as handle:
        handle.write("one\ntw")
        handle.write("o")

    assert list(read_lines(path, cipher)) == ["one", "two"]


def test_append_mode_keeps_earlier_records(tmp_path: Path, key_file: Path) -> None:
    cipher = load_cipher(key_file, environ={})
    path = tmp_path / "events.enc"
    _write(path, cipher, ["a"])
    with open_encrypted_writer(path, cipher, append=True) as handle:
        handle.write("b\n")

    assert list(read_lines(path, cipher)) == ["a", "b"]


def test_encrypted_file_is_readable_by_owner_only(
    tmp_path: Path, key_file: Path
) -> None:
    path = tmp_path / "events.enc"
    _write(path, load_cipher(key_file, environ={}), ["x"])

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_wrong_key_gives_clear_error_naming_file_and_line(
    tmp_path: Path, key_file: Path
) -> None:
    path = tmp_path / "events.enc"
    _write(path, load_cipher(key_file, environ={}), ["secret content"])
    other = LineCipher([Fernet.generate_key()])

    with pytest.raises(
        DecryptionError, match=r"events.enc: line 1 does not decrypt"
    ) as info:
        list(read_lines(path, other))
    assert "secret" not in str(info.value)


def test_plain_file_is_reported_as_not_encrypted(
    tmp_path: Path, key_file: Path
) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text('{"a": 1}\n', encoding="utf-8")

    with pytest.raises(
        DecryptionError, match="line 1 is not an encrypted airctrl record"
    ):
        list(read_lines(path, load_cipher(key_file, environ={})))


def test_gzip_compressed_encrypted_file_is_read_transparently(
    tmp_path: Path, key_file: Path
) -> None:
    cipher = load_cipher(key_file, environ={})
    path = tmp_path / "log.enc"
    _write(path, cipher, ["alpha", "beta"])
    packed = tmp_path / "log.enc.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))

    assert list(read_lines(packed, cipher)) == ["alpha", "beta"]


def test_environment_key_wins_over_key_file(tmp_path: Path, key_file: Path) -> None:
    env_key = Fernet.generate_key()
    path = tmp_path / "e.enc"
    _write(path, LineCipher([env_key]), ["from env"])

    cipher = load_cipher(key_file, environ={KEY_ENV_VAR: env_key.decode()})

    assert list(read_lines(path, cipher)) == ["from env"]


def test_rotated_keys_still_read_files_written_with_the_old_key(tmp_path: Path) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    path = tmp_path / "old.enc"
    _write(path, LineCipher([old]), ["old record"])

    cipher = load_cipher(None, environ={KEY_ENV_VAR: f"{new.decode()},{old.decode()}"})

    assert list(read_lines(path, cipher)) == ["old record"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "does not exist", id="missing-file"),
        pytest.param("", "is empty", id="empty-file"),
        pytest.param("not-a-key\n", "not a valid key", id="malformed-key"),
    ],
)
def test_bad_key_file_is_a_config_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "bad.key"
    if content is not None:
        path.write_text(content, encoding="ascii")

    with pytest.raises(ConfigError, match=message):
        load_cipher(path, environ={})


def test_no_key_anywhere_says_how_to_set_one() -> None:
    with pytest.raises(ConfigError, match=KEY_ENV_VAR):
        load_cipher(None, environ={})


def test_new_key_file_is_never_overwritten(key_file: Path) -> None:
    before = key_file.read_bytes()

    with pytest.raises(FileExistsError):
        write_key_file(key_file)
    assert key_file.read_bytes() == before


def test_jsonl_event_sink_writes_encrypted_events(
    tmp_path: Path, key_file: Path
) -> None:
    cipher = load_cipher(key_file, environ={})
    path = tmp_path / "out" / "events.jsonl"
    sink = JsonlEventSink(path, opener=lambda p: open_encrypted_writer(p, cipher))
    sink.write(
        [{"event": "face", "emotion": "happy"}, {"event": "face", "emotion": "sad"}]
    )
    sink.close()

    assert b"happy" not in path.read_bytes()
    emotions = [json.loads(line)["emotion"] for line in read_lines(path, cipher)]
    assert emotions == ["happy", "sad"]


# airctrl decrypt ------------------------------------------------------------------


def test_decrypt_command_prints_plain_lines(
    tmp_path: Path,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "events.enc"
    _write(path, load_cipher(key_file, environ={}), ["one", "two"])

    code = main(["decrypt", str(path), "--key-file", str(key_file)])

    assert code == 0
    assert capsys.readouterr().out == "one\ntwo\n"


def test_decrypt_command_writes_output_file(
    tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_ENV_VAR, key_file.read_text().strip())
    path = tmp_path / "events.enc"
    _write(path, load_cipher(key_file, environ={}), ["x"])

    code = main(["decrypt", str(path), "-o", str(tmp_path / "plain.txt")])

    assert code == 0
    assert (tmp_path / "plain.txt").read_text(encoding="utf-8") == "x\n"


def test_decrypt_command_with_wrong_key_fails_in_one_line(
    tmp_path: Path,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "events.enc"
    _write(path, load_cipher(key_file, environ={}), ["x"])
    wrong = tmp_path / "wrong.key"
    write_key_file(wrong)

    code = main(
        ["decrypt", str(path), "--key-file", str(wrong), "-o", str(tmp_path / "p")]
    )

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("airctrl: error: events.enc: line 1 does not decrypt")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "p").exists() and not (tmp_path / "p.partial").exists()


@pytest.mark.parametrize(
    "argv_tail",
    [pytest.param(["missing.enc"], id="missing-file"), pytest.param([], id="no-file")],
)
def test_decrypt_command_without_a_readable_file_fails_in_one_line(
    tmp_path: Path,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv_tail: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)

    code = main(["decrypt", *argv_tail, "--key-file", str(key_file)])

    assert code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_decrypt_new_key_creates_a_usable_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert main(["decrypt", "--new-key", str(tmp_path / "k")]) == 0
    assert main(["decrypt", "--new-key", str(tmp_path / "k")]) == 2
    cipher = load_cipher(tmp_path / "k", environ={})
    assert cipher.decrypt_line(cipher.encrypt_line("ok")) == "ok"


def test_decrypt_works_under_a_config_whose_own_logs_are_encrypted(
    tmp_path: Path,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The service's config encrypts its log file; the operator has no key in
    # the environment and no write access to that log: decrypt must still run.
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"logging:\n  file: {tmp_path / 'no-such-dir' / 'x.log'}\n  encrypt: true\n",
        encoding="utf-8",
    )
    path = tmp_path / "events.enc"
    _write(path, load_cipher(key_file, environ={}), ["ok"])

    code = main(
        ["--config", str(config), "decrypt", str(path), "--key-file", str(key_file)]
    )

    assert code == 0 and capsys.readouterr().out == "ok\n"
    assert not (tmp_path / "no-such-dir").exists()

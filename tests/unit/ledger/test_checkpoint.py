"""Signed notes, checkpoints, cosignatures, tile paths, witness requests and ledger events (pure logic)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from nacl.signing import SigningKey

from mcpstore_appliance.errors import InvalidInput
from mcpstore_appliance.ledger import events as ev
from mcpstore_appliance.ledger import note as notes
from mcpstore_appliance.ledger.checkpoint import (
    CheckpointError,
    add_signature_lines,
    open_checkpoint,
    parse_body,
    sign_checkpoint,
)
from mcpstore_appliance.ledger.tiles import TileRef, decode_entries, encode_entries, format_index, parse_tile_path, \
    tiles_for_size
from mcpstore_appliance.ledger.witness import format_request, parse_request

C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = ("This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg"
             "1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_LINE = ("— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6Ry"
           "yBwJnAM=\n")
SUM_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUM_NOTE = ("go.sum database tree\n30055305\nmXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=\n\n"
            "— sum.golang.org Az3grpgEild5qw7+5dtV13Kf1C2Xurm8q4fhdxvcsDHnqNTaxL2AFjBY+2TyGKevucFcAAlWFJJYle3EJlDCrQ+y"
            "3A8=\n")
EXAMPLE_CHECKPOINT = (
    "registry.example/ledger\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n"
    "— registry.example/ledger C0J4aHw9p5CM/0gJGN1EICb0PkjjMCgIqAMBjesl17Rk2HOar3N+G2DLj5NsdVT8NrVlLJqm/9XrwPiNng5W"
    "G0eWGgo=\n")
EXAMPLE_VKEY = "registry.example/ledger+0b427868+AWlNgzTuO7A//+iBA1M3T17dvyz9QKYcUSP7rn3bjbir"
ROOT_8 = base64.b64decode("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=")


def test_c2sp_example_note_verifies():
    verifier = notes.parse_vkey(C2SP_VKEY)
    note, signed = notes.open_note(C2SP_NOTE, [verifier])
    assert note.text == "This is an example message.\n"
    assert signed == [verifier]
    assert verifier.vkey() == C2SP_VKEY


def test_go_note_vector_is_reproduced_byte_for_byte():
    name, key = notes.parse_signer_key(GO_SKEY)
    assert name == "PeterNeumann"
    assert notes.verifier_for(name, key).vkey() == GO_VKEY
    assert notes.signer_key_string(name, key) == GO_SKEY
    signed = notes.sign(GO_TEXT, name, key)
    assert signed == GO_TEXT + "\n" + GO_LINE
    notes.open_note(signed, [notes.parse_vkey(GO_VKEY)])


def test_real_sum_golang_org_tree_note_verifies():
    note, _ = notes.open_note(SUM_NOTE, [notes.parse_vkey(SUM_VKEY)])
    assert note.text.splitlines()[1] == "30055305"


def test_example_checkpoint_is_signed_by_the_test_seed_key():
    key = SigningKey(hashlib.sha256(b"test seed").digest())
    checkpoint = sign_checkpoint("registry.example/ledger", 8, ROOT_8, key)
    assert checkpoint.note == EXAMPLE_CHECKPOINT
    assert notes.verifier_for("registry.example/ledger", key).vkey() == EXAMPLE_VKEY
    opened = open_checkpoint(EXAMPLE_CHECKPOINT, [notes.parse_vkey(EXAMPLE_VKEY)], "registry.example/ledger")
    assert (opened.origin, opened.size, opened.root) == ("registry.example/ledger", 8, ROOT_8)
    with pytest.raises(CheckpointError):
        open_checkpoint(EXAMPLE_CHECKPOINT, [notes.parse_vkey(EXAMPLE_VKEY)], "other.example/ledger")


def test_unknown_signatures_are_ignored_and_known_bad_ones_rejected():
    verifier = notes.parse_vkey(EXAMPLE_VKEY)
    stranger = SigningKey(b"\x07" * 32)
    extra = notes.sign_line(EXAMPLE_CHECKPOINT.split("\n\n")[0] + "\n", "someone.else", stranger).line()
    note, signed = notes.open_note(EXAMPLE_CHECKPOINT + extra, [verifier])
    assert [v.name for v in signed] == ["registry.example/ledger"] and len(note.signatures) == 2

    with pytest.raises(notes.UnverifiedNote) as failure:
        notes.open_note(C2SP_NOTE, [verifier])  # signed, but not by a key we know
    assert not failure.value.bad_signature

    body, sig_line = EXAMPLE_CHECKPOINT.split("\n\n")
    tampered_text = body.replace("\n8\n", "\n9\n") + "\n\n" + sig_line
    with pytest.raises(notes.UnverifiedNote) as failure:
        notes.open_note(tampered_text, [verifier])
    assert failure.value.bad_signature

    raw = bytearray(base64.b64decode(sig_line.split(" ")[-1]))
    raw[10] ^= 1
    flipped = body + "\n\n— registry.example/ledger " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(notes.UnverifiedNote) as failure:
        notes.open_note(flipped, [verifier])
    assert failure.value.bad_signature


@pytest.mark.parametrize("message", [
    "",
    "no blank line\n— a b\n",
    "text\n\n",
    "text\n\n— name\n",
    "text\n\nname AAAA\n",
    "text\n\n— name !!notbase64!!\n",
    "text\n\n— name AAAA\n",  # shorter than a key id plus a signature byte
    "text\n\n— name QUJDREVGRw==",  # no final newline
    "te\x01xt\n\n— name QUJDREVGRw==\n",
])
def test_malformed_notes_are_rejected(message):
    with pytest.raises(notes.NoteError):
        notes.parse(message)


@pytest.mark.parametrize("vkey", [
    "", "name", "name+12345678", "na me+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # wrong key id
    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
    "example.com/foo+530d903a+AgkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # unknown algorithm
    "example.com/foo+zzzzzzzz+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
])
def test_malformed_verifier_keys_are_rejected(vkey):
    with pytest.raises(notes.NoteError):
        notes.parse_vkey(vkey)


def test_cosignature_roundtrip_and_key_id_rule():
    key = SigningKey(b"\x05" * 32)
    body = EXAMPLE_CHECKPOINT.split("\n\n")[0] + "\n"
    signature = notes.cosign(body, "witness.example", key, 1_700_000_000)
    raw = base64.b64decode(signature.line().split(" ")[-1])
    assert len(raw) == 4 + 8 + 64
    assert raw[:4] == hashlib.sha256(b"witness.example\n\x04" + bytes(key.verify_key)).digest()[:4]
    assert int.from_bytes(raw[4:12], "big") == 1_700_000_000
    verifier = notes.verifier_for("witness.example", key, notes.ALG_COSIGNATURE_V1)
    assert notes.parse_vkey(verifier.vkey()).key_id == verifier.key_id
    cosigned = add_signature_lines(EXAMPLE_CHECKPOINT, [signature.line()])
    assert add_signature_lines(cosigned, [signature.line()]) == cosigned
    # the log signature still verifies, and the cosignature verifies against the witness key
    opened = open_checkpoint(cosigned, [notes.parse_vkey(EXAMPLE_VKEY)])
    assert opened.size == 8
    assert notes.cosignatures_by(notes.parse(cosigned), [verifier]) == {"witness.example": 1_700_000_000}
    # the same signature over another body fails
    other = notes.Note(body.replace("\n8\n", "\n9\n"), ())
    with pytest.raises(notes.UnverifiedNote):
        notes.verify_cosignature(other.text, signature, verifier)
    with pytest.raises(notes.NoteError):
        notes.cosign(body, "witness.example", key, 0)


@pytest.mark.parametrize("body", [
    "origin\n8\n",
    "origin\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "origin\n-1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "origin\n99999999999999999999\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQy=\n",
    "origin\n8\nAAAA\n",
    "ori gin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "origin+x\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
])
def test_malformed_checkpoint_bodies(body):
    with pytest.raises(CheckpointError):
        parse_body(body)


def test_checkpoint_body_with_extension_lines():
    origin, size, root, extensions = parse_body("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n")
    assert (origin, size, extensions) == ("o", 0, ("ext",)) and len(root) == 32


# --- tiles --------------------------------------------------------------------------------------------


def test_tile_index_paths():
    assert format_index(1234067) == "x001/x234/067"
    assert format_index(0) == "000" and format_index(999) == "999" and format_index(1000) == "x001/000"
    assert parse_tile_path("0/x001/x234/067") == TileRef(0, 1234067, 256)
    assert parse_tile_path("2/000.p/1") == TileRef(2, 0, 1)
    assert parse_tile_path("entries/273.p/112") == TileRef(None, 273, 112)
    for ref in (TileRef(0, 1234067, 256), TileRef(1, 1, 17), TileRef(None, 5, 3)):
        assert parse_tile_path(ref.path().removeprefix("tile/")) == ref


@pytest.mark.parametrize("path", [
    "", "0", "0/", "0/1", "0/0000", "0/x1/000", "0/001/000", "0/x000/001", "64/000", "01/000", "-1/000",
    "0/000.p/0", "0/000.p/256", "0/000.p/01", "0/000.p/", "0/000.p", "entries/abc", "0/000/extra",
    "0/x001/x002/x003/x004/x005/x006/x007/000",
])
def test_malformed_tile_paths(path):
    with pytest.raises(InvalidInput):
        parse_tile_path(path)


def test_tiles_for_a_size_follow_the_spec_examples():
    assert [r.path() for r in tiles_for_size(256)] == ["tile/0/000", "tile/1/000.p/1"]
    paths = [r.path() for r in tiles_for_size(70_000)]
    assert paths[272:] == ["tile/0/272", "tile/0/273.p/112", "tile/1/000", "tile/1/001.p/17", "tile/2/000.p/1"]
    assert len(paths) == 273 + 4


def test_entry_bundles_roundtrip():
    leaves = [b"", b"a", b"x" * 65535]
    bundle = encode_entries(leaves)
    assert bundle[:2] == b"\x00\x00" and decode_entries(bundle) == leaves
    with pytest.raises(ValueError):
        decode_entries(bundle[:-1])


# --- witness requests ----------------------------------------------------------------------------------


def test_add_checkpoint_request_roundtrip():
    proof = [b"\x01" * 32, b"\x02" * 32]
    parsed = parse_request(format_request(5, proof, EXAMPLE_CHECKPOINT))
    assert (parsed.old, parsed.proof, parsed.checkpoint) == (5, proof, EXAMPLE_CHECKPOINT)
    assert parse_request(format_request(0, [], EXAMPLE_CHECKPOINT)).proof == []


@pytest.mark.parametrize("body", [
    b"", b"old 5\n", b"new 5\n\nx", b"old -1\n\nx", b"old 05\n\nx", b"old 5\nAAAA\n\nx", b"\xff\xfe\n\nx",
    b"old 1\n" + b"".join(base64.b64encode(b"\x00" * 32) + b"\n" for _ in range(64)) + b"\nx",
])
def test_malformed_add_checkpoint_requests(body):
    with pytest.raises(InvalidInput):
        parse_request(body)


# --- events -------------------------------------------------------------------------------------------

SHA = "ab" * 32


def test_publish_leaf_is_canonical_json():
    event = ev.publish_event(namespace="acme", name="tool", version="1.0.0", sha256=SHA, size=10,
                             publisher="alice", signer_fingerprint=None, time="2025-01-02T03:04:05Z")
    data = ev.encode(event)
    assert data == (b'{"kind":"publish","name":"tool","namespace":"acme","publisher":"alice","sha256":"' +
                    SHA.encode() + b'","signer_fingerprint":null,"size":10,"time":"2025-01-02T03:04:05Z",'
                    b'"version":"1.0.0"}')
    assert ev.encode({**event, "name": "caf\u00e9"}).count("café".encode()) == 1


@pytest.mark.parametrize("change", [
    {"kind": "delete"}, {"sha256": "AB" * 32}, {"sha256": "ab"}, {"size": -1}, {"size": "10"}, {"size": True},
    {"size": 1.5}, {"time": None}, {"extra": float("nan")}, {"extra": 1 << 60}, {"extra": b"bytes"},
    {"extra": "x" * 70000},
])
def test_bad_events_are_rejected(change):
    event = {**ev.publish_event(namespace="a", name="b", version="1", sha256=SHA, size=1, publisher="p",
                                signer_fingerprint=None), **change}
    with pytest.raises(InvalidInput):
        ev.encode(event)


def test_status_events_and_sealing():
    event = ev.status_event("yank", namespace="a", name="b", version="1", sha256=SHA, reason="broken")
    data = ev.encode(event)
    leaf, salt = ev.seal(data)
    assert b"yank" not in leaf and ev.opens(leaf, salt, data)
    assert not ev.opens(leaf, salt, data.replace(b"broken", b"fine!!"))
    assert not ev.opens(leaf, "00" * 32, data)
    with pytest.raises(InvalidInput):
        ev.status_event("publish", namespace="a", name="b", version="1")
    with pytest.raises(InvalidInput):
        ev.encode({"kind": "yank", "namespace": "a", "name": "b"})

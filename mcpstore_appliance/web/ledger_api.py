"""The ledger's HTTP surface: checkpoint, key, entries, lookups, proofs, C2SP tlog-tiles and tlog-witness.

Everything here is public and read-only except the witness endpoint. Private (org) releases are sealed in the
log, so anonymous views never show them: lookups skip them and their entries show only the commitment. A
caller with a token or session who may see the package (the catalog's one visibility rule) also gets its
sealed entries in lookups and their openings in entries, so `mcpstore verify` works for members' private
bundles too.
"""

from __future__ import annotations

import re

import functools
import logging

from aiohttp import web

from ..errors import InvalidInput, NotFound, TooLarge
from ..ledger import note as notes
from ..ledger.service import Ledger, LedgerInconsistent, MayOpen
from ..ledger.tiles import parse_tile_path
from ..ledger.witness import MAX_BODY_BYTES, SIZE_CONTENT_TYPE, WitnessConflict
from ..streams import read_capped
from .access import ANYONE, NO_CREDENTIALS, OPEN_PROBE, allow
from .auth import principal_of
from .errors import json_error
from .openapi import documented
from .keys import SERVICES

log = logging.getLogger("mcpstore.ledger")

routes = web.RouteTableDef()

TAGS = ["ledger"]
MAX_INDEX = (1 << 63) - 1
_DECIMAL = re.compile(r"^[0-9]{1,19}$")
IMMUTABLE = "public, max-age=31536000, immutable"
TEXT = "text/plain"


def _ledger(request: web.Request) -> Ledger:
    return request.app[SERVICES].ledger


def _may_open(request: web.Request) -> MayOpen:
    """Whether the caller may see the package a sealed event is about: the catalog's visibility rule."""
    principal, packages = principal_of(request), request.app[SERVICES].discovery.packages
    return lambda event: principal is not None and packages.visible(principal, str(event.get("namespace")),
                                                                    str(event.get("name")))


def _lookup_scope(request: web.Request) -> dict:
    """Anonymous callers: public entries only; others also the sealed entries of packages they may see."""
    return {"public_only": principal_of(request) is None, "may_open": _may_open(request)}


def _refuses_forks(handler):
    """The ledger would rather stop than sign a checkpoint its stored tree contradicts: say so plainly."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except LedgerInconsistent as exc:
            log.error("%s", exc)
            return json_error(503, "ledger_inconsistent", str(exc))

    return wrapper


def _parse_int(raw: str | None, name: str) -> int:
    if raw is None or raw == "":
        raise InvalidInput(f"{name} is required", code="invalid_parameter", details={"parameter": name})
    if not _DECIMAL.match(raw) or int(raw) > MAX_INDEX:
        raise InvalidInput(f"{name} must be a non-negative integer below 2^63", code="invalid_parameter",
                           details={"parameter": name})
    return int(raw)


def _optional_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    return None if raw is None or raw == "" else _parse_int(raw, name)


SIZE_SCHEMA = {"type": "integer", "minimum": 0}
PROOF_SCHEMA = {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}


@routes.get("/ledger")
@allow(ANYONE)
@documented("Ledger summary: origin, size, keys, witnesses", tags=TAGS)
@_refuses_forks
async def ledger_info(request: web.Request) -> web.Response:
    ledger = _ledger(request)
    size = await ledger.tree_size()
    checkpoint = await ledger.ensure_checkpoint(size)
    return web.json_response({
        "origin": ledger.origin,
        "tree_size": size,
        "verifier_key": ledger.verifier_key(),
        "checkpoint": await ledger.cosigned_note(checkpoint),
        "witness_key": ledger.witness.verifier_key() if ledger.witness else None,
        "witnesses": [name for name, _, _ in ledger.collector.peers],
        "tiles": "/ledger/tile/",
    })


@routes.get("/ledger/checkpoint")
@allow(ANYONE)
@documented("The latest signed checkpoint (C2SP tlog-checkpoint note, with witness cosignatures)", tags=TAGS)
@_refuses_forks
async def checkpoint(request: web.Request) -> web.Response:
    ledger = _ledger(request)
    latest = await ledger.ensure_checkpoint(await ledger.tree_size())
    return web.Response(text=await ledger.cosigned_note(latest), content_type=TEXT, charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


@routes.get("/ledger/key")
@allow(ANYONE)
@documented("The ledger's signed-note verifier key (name+keyid+base64)", tags=TAGS)
async def key(request: web.Request) -> web.Response:
    return web.Response(text=_ledger(request).verifier_key() + "\n", content_type=TEXT, charset="utf-8")


@routes.get("/ledger/entries/{index}")
@allow(ANYONE)  # members also get the opening of sealed entries
@documented("One ledger entry: the exact leaf text, its hash and the parsed event; for a sealed (private) entry, "
            "callers who may see the package also get its opening (salt and event)", tags=TAGS,
            responses={200: "OK", 400: "malformed index", 404: "no such entry"})
async def entry(request: web.Request) -> web.Response:
    index = _parse_int(request.match_info["index"], "index")
    found = await _ledger(request).entry(index)
    event = found.opened_event()
    if event is not None and _may_open(request)(event):
        return web.json_response(found.member_view())
    return web.json_response(found.public_view())


@routes.get("/ledger/lookup/{sha256}")
@allow(ANYONE)
@documented("Indices of the ledger entries about a bundle (by its sha256); sealed entries only for callers who "
            "may see the package", tags=TAGS, responses={200: "OK", 400: "not a sha256"})
async def lookup(request: web.Request) -> web.Response:
    sha256 = request.match_info["sha256"].lower()
    indices = await _ledger(request).lookup(sha256, **_lookup_scope(request))
    return web.json_response({"sha256": sha256, "indices": indices})


@routes.get("/ledger/release/{namespace}/{name}/{version}")
@allow(ANYONE)
@documented("Indices of the ledger entries about one release (namespace/name@version); sealed entries only for "
            "callers who may see the package", tags=TAGS)
async def release(request: web.Request) -> web.Response:
    info = request.match_info
    indices = await _ledger(request).lookup_release(info["namespace"], info["name"], info["version"],
                                                    **_lookup_scope(request))
    return web.json_response({"namespace": info["namespace"], "name": info["name"], "version": info["version"],
                              "indices": indices})


@routes.get("/ledger/proof/inclusion")
@allow(ANYONE)
@documented("Inclusion proof of entry `index` in the tree of `size` (default: the latest checkpoint)", tags=TAGS,
            query={"index": {"type": "integer", "minimum": 0, "required": True},
                   "size": {**SIZE_SCHEMA, "description": "tree size; default the latest checkpoint's"}},
            responses={200: "OK", 400: "bad or out-of-range index or size", 404: "no such entry"})
@_refuses_forks
async def inclusion(request: web.Request) -> web.Response:
    ledger = _ledger(request)
    index = _parse_int(request.query.get("index"), "index")
    size = _optional_int(request, "size")
    checkpoint = None
    if size is None:
        if index >= await ledger.tree_size():
            raise NotFound(f"no ledger entry {index}", code="no_such_entry")
        checkpoint = await ledger.ensure_checkpoint(index + 1)
        size = checkpoint.size
    proof = await ledger.inclusion_proof(index, size)
    found = await ledger.entry(index)
    checkpoint = checkpoint or await ledger.checkpoint_at(size)
    return web.json_response({
        "leaf_index": index,
        "tree_size": size,
        "leaf_hash": notes.b64(found.leaf_hash),
        "inclusion_proof": [notes.b64(h) for h in proof],
        "root": notes.b64(await ledger.root(size)),
        "checkpoint": checkpoint.note if checkpoint else None,
    })


@routes.get("/ledger/proof/consistency")
@allow(ANYONE)
@documented("Consistency proof from tree size `old` to `new` (default: the latest checkpoint)", tags=TAGS,
            query={"old": {"type": "integer", "minimum": 1, "required": True},
                   "new": {**SIZE_SCHEMA, "description": "default the latest checkpoint's size"}},
            responses={200: "OK", 400: "bad sizes or old > new"})
@_refuses_forks
async def consistency(request: web.Request) -> web.Response:
    ledger = _ledger(request)
    old = _parse_int(request.query.get("old"), "old")
    new = _optional_int(request, "new")
    if new is None:
        new = (await ledger.ensure_checkpoint(await ledger.tree_size())).size
    if old == 0 or old > new:
        raise InvalidInput("a consistency proof needs 0 < old <= new", code="invalid_parameter",
                           details={"old": old, "new": new})
    proof = await ledger.consistency_proof(old, new)
    return web.json_response({
        "old": old, "new": new,
        "old_root": notes.b64(await ledger.root(old)),
        "new_root": notes.b64(await ledger.root(new)),
        "consistency_proof": [notes.b64(h) for h in proof],
    })


@routes.get("/ledger/tile/{path:.+}")
@allow(NO_CREDENTIALS)  # the same public bytes for everyone
@documented("C2SP tlog-tiles: hash tiles tile/<L>/<N>[.p/<W>] and entry bundles tile/entries/<N>[.p/<W>]",
            tags=TAGS, responses={200: "OK", 400: "malformed tile path", 404: "tile does not exist yet"})
async def tile(request: web.Request) -> web.Response:
    ref = parse_tile_path(request.match_info["path"])
    body = await _ledger(request).tile(ref)
    # A tile's bytes never change once it exists (a partial tile is fixed by its width), so cache forever.
    response = web.Response(body=body, content_type="application/octet-stream", headers={"Cache-Control": IMMUTABLE})
    if ref.is_entries:
        response.enable_compression()  # tlog-tiles recommends gzip for entry bundles (JSON compresses well)
    return response


@routes.get("/ledger/witness/key")
@allow(OPEN_PROBE)
@documented("This appliance's witness cosignature verifier key", tags=TAGS)
async def witness_key(request: web.Request) -> web.Response:
    witness = _ledger(request).witness
    if witness is None:
        raise NotFound("this appliance is not a witness", code="not_a_witness")
    return web.Response(text=witness.verifier_key() + "\n", content_type=TEXT, charset="utf-8")


@routes.post("/ledger/witness/add-checkpoint")
@allow(OPEN_PROBE)  # the witness protocol: checked by signatures
@documented("C2SP tlog-witness: cosign a followed log's checkpoint after checking its consistency proof",
            tags=TAGS, body={"type": "string"}, body_content_type="text/plain",
            responses={200: "the cosignature line", 400: "malformed request or old > new",
                       403: "checkpoint not signed by the log's key", 404: "unknown log origin",
                       409: "old is not the size last cosigned (body: that size)", 413: "body too large",
                       422: "consistency proof does not verify"})
async def add_checkpoint(request: web.Request) -> web.Response:
    witness = _ledger(request).witness
    if witness is None:
        raise NotFound("this appliance is not a witness", code="not_a_witness")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise TooLarge("add-checkpoint body is too large")
    body = await read_capped(request.content, MAX_BODY_BYTES)
    try:
        line = await witness.add_checkpoint(body)
    except WitnessConflict as conflict:
        return web.Response(status=409, text=f"{conflict.size}\n", content_type=SIZE_CONTENT_TYPE)
    return web.Response(text=line, content_type=TEXT, charset="utf-8")

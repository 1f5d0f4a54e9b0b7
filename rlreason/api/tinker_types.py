"""Tinker's wire formats for ``rlreason serve-api`` (``rlreason.api.tinker_server``), and the conversions between
Tinker's records and the primitive API's.

The SDK (``tinker`` 0.38) sends ``forward_backward`` as protobuf and wants ``SampleResponse`` and
``ForwardBackwardOutput`` back as protobuf (package ``tinker_public``); everything else is JSON. The few messages
used are hand-coded here (varint / length-delimited wire format), so the server needs no generated code and no
``tinker`` install. Left out: images, audio, sparse tensors, top-k logprobs, provenance spans (ignored).

Tinker datum -> ``Datum``: ``model_input`` holds tokens 0..n-1 and ``target_tokens[i]`` is token i+1, with every
per-target array aligned to the targets; ours is the whole sequence, each array shifted right by one (position t
describes token t, position 0 is 0). A target that differs from the next input token is allowed only where every
loss input is 0 (recipes pad the prompt's targets with 0), and is replaced by the real token there.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass

import numpy as np

from rlreason.api.records import APIError, Datum

INPUTS = {"target_tokens", "weights", "advantages", "logprobs", "mask"}  # Tinker loss_fn_inputs we understand
REDUCTIONS = ("mean", "sum", "min", "max", "slack", "hash2", "unique")  # the SDK folds metrics "name:reduction"
_DTYPES = {1: np.float32, 2: np.int64, 3: np.int32}  # tinker_public.DType
_LENGTH = 1  # tinker_public.StopReason (STOP is 0)
CLIENT_CONFIG = {  # the SDK's feature flags (ClientConfigResponse): plain httpx, JSON polling, one fwd/bwd chunk
    "pjwt_auth_enabled": False, "use_pyqwest_transport": False, "sample_use_retrieve_futures": False,
    "sample_join_sampling_session": False, "custom_loss_server_side": False, "proto_compress_fwdbwd": False,
    "parallel_fwdbwd_chunks": False, "fwdbwd_max_chunk_len": 1_000_000, "fwdbwd_max_chunk_bytes_count": 2**40}
UNSUPPORTED = {  # path -> the SDK call that sends it (any other path is named by its method and path)
    "/api/v1/save_weights_external": "TrainingClient.save_weights_external",
    "/api/v1/create_custom_loss": "server-side custom losses (create_custom_loss)",
    "/api/v1/copy_weights": "ServiceClient.copy_weights"}


class Unsupported(APIError):
    """A Tinker call or option this server does not serve; the SDK shows the message as it is."""

    def __init__(self, call: str) -> None:
        super().__init__(f"rlreason serve-api does not support {call}")


# -- protobuf wire format -------------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes(num: int, data: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _int(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def _double(num: int, value: float) -> bytes:
    return _varint(num << 3 | 1) + struct.pack("<d", value)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return value, i


def _fields(buf: bytes) -> dict[int, list]:
    """A message's fields: number -> values (int for varints, bytes otherwise), in order."""
    out: dict[int, list] = {}
    i = 0
    try:
        while i < len(buf):
            key, i = _read_varint(buf, i)
            wire = key & 7
            if wire == 0:
                value, i = _read_varint(buf, i)
            elif wire in (1, 5):
                size = 8 if wire == 1 else 4
                value, i = buf[i:i + size], i + size
            elif wire == 2:
                size, i = _read_varint(buf, i)
                value, i = buf[i:i + size], i + size
            else:
                raise ValueError(wire)
            out.setdefault(key >> 3, []).append(value)
    except (IndexError, ValueError):
        raise APIError("forward_backward: the request body is not a tinker_public.ForwardBackwardRequest") from None
    return out


def _text(fields: dict, num: int) -> str:
    return fields[num][-1].decode() if num in fields else ""


def _tensor(key: str, buf: bytes) -> np.ndarray:
    f = _fields(buf)
    if 2 in f:
        raise Unsupported(f"sparse loss_fn_inputs[{key!r}] (send dense 1-D arrays)")
    dtype = _DTYPES.get(f.get(3, [0])[-1])
    if dtype is None:
        raise APIError(f"loss_fn_inputs[{key!r}]: unsupported dtype (float32 or int64)")
    shape = []
    for v in f.get(4, []):  # packed (bytes) or not (ints)
        if isinstance(v, int):
            shape.append(v)
            continue
        i = 0
        while i < len(v):
            x, i = _read_varint(v, i)
            shape.append(x)
    if len(shape) > 1:
        raise Unsupported(f"{len(shape)}-D loss_fn_inputs[{key!r}] (one value per target token)")
    return np.frombuffer(f[1][-1] if 1 in f else b"", dtype=dtype)


def _model_input(chunks: list[bytes]) -> list[int]:
    tokens: list[int] = []
    for chunk in chunks:
        f = _fields(chunk)
        if 1 not in f:
            raise Unsupported("image or audio chunks in model_input (token chunks only)")
        tokens += np.frombuffer(_fields(f[1][-1]).get(1, [b""])[-1], dtype=np.int32).tolist()
    return tokens


@dataclass
class ForwardBackward:
    """A decoded ``tinker_public.ForwardBackwardRequest``: each datum as (model_input tokens, loss_fn_inputs)."""

    model_id: str
    loss_fn: str
    loss_config: dict
    forward_only: bool
    data: list[tuple[list[int], dict[str, np.ndarray]]]


def decode_forward_backward(body: bytes) -> ForwardBackward:
    f = _fields(body)
    config = {}
    for entry in f.get(5, []):
        e = _fields(entry)
        config[_text(e, 1)] = struct.unpack("<d", e[2][-1])[0] if 2 in e else 0.0
    for entry in f.get(7, []):  # loss_fn_config_v2: number or text; preferred when set
        e = _fields(entry)
        value = _fields(e.get(2, [b""])[-1])
        config[_text(e, 1)] = struct.unpack("<d", value[1][-1])[0] if 1 in value else _text(value, 2)
    data = []
    for datum in f.get(3, []):
        d = _fields(datum)
        inputs = {}
        for entry in d.get(2, []):
            e = _fields(entry)
            key = _text(e, 1)
            inputs[key] = _tensor(key, e.get(2, [b""])[-1])
        data.append((_model_input(d.get(1, [])), inputs))
    return ForwardBackward(_text(f, 1), _text(f, 4), config, bool(f.get(6, [0])[-1]), data)


def encode_sample_response(sequences: list[tuple[list[int], list[float], str]],
                           prompt_logprobs: list[float] | None = None) -> bytes:
    """``tinker_public.SampleResponse``: (tokens, logprobs, "stop" | "length") per sequence; prompt logprobs with
    NaN where not computed."""
    out = b""
    for tokens, logprobs, stop in sequences:
        body = _int(1, _LENGTH) if stop == "length" else b""
        body += _bytes(2, np.asarray(tokens, dtype=np.int32).tobytes())
        body += _bytes(3, np.asarray(logprobs, dtype=np.float32).tobytes())
        out += _bytes(1, body)
    if prompt_logprobs is not None:
        out += _bytes(2, np.asarray(prompt_logprobs, dtype=np.float32).tobytes())
    return out


def encode_forward_backward_output(logprobs: list[list[float]], metrics: dict[str, float]) -> bytes:
    """``tinker_public.ForwardBackwardOutput``: one ArrayRecord with a float32 ``logprobs`` field per datum."""
    arrays = [np.asarray(x, dtype=np.float32) for x in logprobs]
    offsets = np.cumsum([0] + [a.nbytes for a in arrays], dtype=np.int64)
    batched = _bytes(1, b"".join(a.tobytes() for a in arrays)) + _bytes(2, offsets.tobytes()) + _int(3, 1)
    record = _bytes(1, b"ArrayRecord") + _bytes(2, _bytes(1, b"logprobs") + _bytes(2, batched)) + _int(3, len(arrays))
    out = _bytes(1, b"ArrayRecord") + _bytes(2, record)
    for key, value in metrics.items():
        out += _bytes(3, _bytes(1, key.encode()) + _double(2, float(value)))
    return out


def sdk_model_dir(path: str) -> str:
    """The model directory as the SDK's ``get_tokenizer`` reads it: it takes a name with exactly two '/' as
    ``org/model/variant`` and keeps ``org/model``, so such a path gets a trailing '/'."""
    path = str(path)
    return path + "/" if path.count("/") == 2 else path


def failure(e: BaseException) -> dict:
    """A failed request as ``retrieve_future`` answers it; the SDK raises ``RequestFailedError`` with the text."""
    if isinstance(e, APIError):
        return {"error": str(e), "category": "user"}
    logging.getLogger(__name__).error("serve-api: backend call failed", exc_info=e)
    return {"error": f"{type(e).__name__}: {e}", "category": "server"}


# -- records -------------------------------------------------------------------------------------------------------
def to_datum(i: int, model_input: list[int], inputs: dict[str, np.ndarray], loss: str) -> Datum:
    """Tinker's datum ``i`` as a ``Datum`` (see the module); ``APIError`` naming what to change."""
    unknown = sorted(set(inputs) - INPUTS)
    if unknown:
        raise Unsupported(f"loss_fn_inputs {unknown} (known: {sorted(INPUTS)})")
    if "target_tokens" not in inputs:
        raise APIError(f"data[{i}]: loss_fn_inputs has no 'target_tokens'")
    n = len(model_input)
    targets = inputs["target_tokens"].astype(np.int64)
    arrays = {k: v.astype(np.float64) for k, v in inputs.items() if k != "target_tokens"}
    for key, values in [("target_tokens", targets), *arrays.items()]:
        if len(values) != n:
            raise APIError(f"data[{i}]: loss_fn_inputs[{key!r}] has {len(values)} values for {n} model_input "
                           "tokens (one per target)")
    if n == 0:
        raise APIError(f"data[{i}]: model_input is empty")
    active = np.zeros(n, dtype=bool) if arrays else np.ones(n, dtype=bool)  # (no inputs: every target trains)
    for key in ("weights", "advantages", "logprobs", "mask"):
        if key in arrays:
            active |= arrays[key] != 0
    shifted = np.asarray(model_input[1:], dtype=np.int64) != targets[:-1]
    bad = np.flatnonzero(shifted & active[:-1])
    if len(bad):
        j = int(bad[0])
        raise APIError(f"data[{i}]: target_tokens[{j}] is {targets[j]} but model_input[{j + 1}] is "
                       f"{model_input[j + 1]}: targets must be the next input tokens (model_input shifted left by "
                       "one, then one last token), except where every loss input is 0")
    mask = arrays.get("mask", active.astype(np.float64))
    out = {key: [0.0, *values.tolist()] for key, values in arrays.items() if key != "mask"}
    out["mask"] = [0.0, *mask.tolist()]
    return Datum(list(model_input) + [int(targets[-1])], out)


def tinker_metrics(loss_sum: float, metrics: dict[str, float]) -> dict[str, float]:
    """The backend's metrics as the SDK folds them: every key ``name:reduction`` (``:mean`` added where missing),
    plus Tinker's ``loss:sum``."""
    out = {}
    for key, value in metrics.items():
        name, _, reduction = key.rpartition(":")
        if not name or reduction not in REDUCTIONS:
            name, reduction = key, "mean"
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[f"{name.replace(':', '/')}:{reduction}"] = float(value)
    out["loss:sum"] = float(loss_sum)
    return out


def prompt_tokens(prompt: dict) -> list[int]:
    """The token ids of a JSON ``ModelInput``."""
    tokens: list[int] = []
    for chunk in prompt.get("chunks", []):
        if chunk.get("type", "encoded_text") != "encoded_text":
            raise Unsupported(f"{chunk.get('type')} chunks in a sampling prompt (token chunks only)")
        tokens += [int(t) for t in chunk.get("tokens", [])]
    if not tokens:
        raise APIError("sample: the prompt has no tokens")
    return tokens

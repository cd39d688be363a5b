"""Amazon Bedrock's side of the wire, for the stand-ins (provider_standins.py) and the wire tests: SigV4
signatures checked as AWS checks them (recomputed with botocore), AWS's binary event-stream framing, and
each model family's answers and stream chunks as Bedrock sends them."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import struct
from datetime import datetime, timezone

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as AwsCredentials

AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY = "AKIATESTSTANDIN00001", "aws-test-SECRET-9b8a7c6d5e4f"


def word_pieces(words: list[str]) -> list[str]:
    """The words of an answer as streamed: each after the first with its leading space."""
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def aws_event(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event-stream framing: prelude, string headers, payload, CRC32s."""
    encoded = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
                       for k, v in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def aws_chunk(body: dict) -> bytes:
    """A Bedrock stream `chunk` event carrying the model's JSON, base64-encoded, as InvokeModelWithResponseStream."""
    payload = orjson.dumps({"bytes": base64.b64encode(orjson.dumps(body)).decode()})
    return aws_event({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload)


def sigv4_refusal(method: str, url: str, headers: dict[str, str], body: bytes, region: str, now: float) -> str:
    """Why the SigV4 signature of a request is wrong ("" when it verifies), as AWS checks it."""
    auth = headers.get("Authorization", "")
    match = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})", auth)
    if not match:
        return "missing or malformed SigV4 Authorization header"
    key_id, _, signed_region, service, signed, signature = match.groups()
    if key_id != AWS_ACCESS_KEY_ID:
        return "The security token included in the request is invalid."
    if (signed_region, service) != (region, "bedrock"):
        return f"credential scope {signed_region}/{service} is not {region}/bedrock"
    stamp = headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return "missing X-Amz-Date"
    if abs(now - signed_at) > 300:
        return "Signature expired"
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names:
        return "host and x-amz-date must be signed"
    lowered = {k.lower(): v for k, v in headers.items()}
    request = AWSRequest(method=method, url=url, data=body, headers={n: lowered.get(n, "") for n in names})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(AwsCredentials(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), "bedrock", region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        return "The request signature we calculated does not match the signature you provided."
    return ""


def bedrock_counts(input_tokens: int, output_tokens: int) -> dict[str, str]:
    return {"X-Amzn-Bedrock-Input-Token-Count": str(input_tokens),
            "X-Amzn-Bedrock-Output-Token-Count": str(output_tokens)}


def bedrock_answer(model: str, words: list[str], prompt_tokens: int) -> dict:
    text = " ".join(words)
    if model.startswith("ai21."):
        return {"id": "j-1", "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                          "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                          "total_tokens": prompt_tokens + len(words)}}
    if model.startswith("cohere."):
        return {"response_id": "r-1", "generation_id": "g-1", "text": text, "finish_reason": "COMPLETE",
                "chat_history": []}
    if model.startswith("anthropic."):
        return {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": len(words)}}
    if model.startswith("amazon.titan"):
        return {"inputTextTokenCount": prompt_tokens,
                "results": [{"tokenCount": len(words), "outputText": text, "completionReason": "FINISH"}]}
    return {"generation": text, "prompt_token_count": prompt_tokens, "generation_token_count": len(words),
            "stop_reason": "stop"}


def bedrock_stream(model: str, words: list[str], prompt_tokens: int) -> list[dict]:
    metrics = {"amazon-bedrock-invocationMetrics": {"inputTokenCount": prompt_tokens, "outputTokenCount": len(words),
                                                    "invocationLatency": 10, "firstByteLatency": 5}}
    pieces = word_pieces(words)
    if model.startswith("anthropic."):
        return [{"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant",
                                                      "model": model, "content": [], "stop_reason": None,
                                                      "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}},
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
                  for p in pieces),
                {"type": "content_block_stop", "index": 0},
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(words)}},
                {"type": "message_stop", **metrics}]
    last = len(pieces) - 1
    if model.startswith("ai21."):
        return [{"id": "j-1", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]},
                *({"id": "j-1", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
                  for p in pieces),
                {"id": "j-1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                           "total_tokens": prompt_tokens + len(words)}, **metrics}]
    if model.startswith("cohere."):
        return [{"is_finished": False, "event_type": "stream-start", "generation_id": "g-1"},
                *({"is_finished": False, "event_type": "text-generation", "text": p} for p in pieces),
                {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE",
                 "response": {"text": " ".join(words)}, **metrics}]
    if model.startswith("amazon.titan"):
        return [{"outputText": p, "index": 0, "totalOutputTextTokenCount": i + 1,
                 "completionReason": "FINISH" if i == last else None, "inputTextTokenCount": prompt_tokens,
                 **(metrics if i == last else {})} for i, p in enumerate(pieces)]
    return [{"generation": p, "prompt_token_count": prompt_tokens if i == 0 else None, "generation_token_count": i + 1,
             "stop_reason": "stop" if i == last else None, **(metrics if i == last else {})}
            for i, p in enumerate(pieces)]

"""SCRAM credentials on the wire: the salted password and the ``AlterUserScramCredentials``
request that carries it to the controller.

Separate from ``bando.infra.security`` because it is protocol plumbing, not policy: aiokafka
has no struct for this request (API key 51), so it is declared here field by field, next to
the RFC 5802 computation whose output it carries. The salted password is computed here, so
no clear password ever crosses the wire or a command line.
"""

from __future__ import annotations

import hashlib

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

SCRAM_MECHANISM = "SCRAM-SHA-256"
# Mechanism -> (Kafka's id for it in the request, hashlib's digest name).
SCRAM_IDS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
SCRAM_ITERATIONS = 8192  # Kafka's minimum is 4096


class AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("user", CompactString("utf-8")), ("error_code", Int16),
                                 ("error_message", CompactString("utf-8")),
                                 ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):
    API_KEY = 51
    API_VERSION = 0
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                   ("tags", TaggedFields))),
        ("upsertions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                    ("iterations", Int32), ("salt", CompactBytes),
                                    ("salted_password", CompactBytes),
                                    ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest(Request[AlterUserScramCredentialsRequest_v0]):
    API_KEY = 51

    def __init__(self, upsertions: list[tuple[str, int, int, bytes, bytes]]) -> None:
        self._upsertions = upsertions

    def build(self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]
              ) -> AlterUserScramCredentialsRequest_v0:
        return request_struct_class(
            [], [(name, mech, it, salt, salted, {})
                 for name, mech, it, salt, salted in self._upsertions], {})


def salted_password(password: str, salt: bytes, iterations: int,
                    mechanism: str = SCRAM_MECHANISM) -> bytes:
    """SCRAM's SaltedPassword (RFC 5802: Hi() = PBKDF2 with the mechanism's HMAC)."""
    _, digest = SCRAM_IDS[mechanism]
    return hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, iterations)

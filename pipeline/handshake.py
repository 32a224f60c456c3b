"""Which handshake failed, and why, in one line: TLS and SASL with Kafka, TLS with Temporal.

aiokafka's clients hide the cause of a failed bootstrap ("Unable to bootstrap from
[...]", the reason only logged), so :func:`kafka_handshake` opens one connection per
bootstrap server itself, with the same options the clients use, and names what failed:
an untrusted or mismatched certificate (``certificate verify failed``), a refused SASL
login (``SASL authentication failed``), a mechanism the broker does not enable.

A handshake that fails this way is a configuration problem (exit 2: retrying cannot fix
a wrong password or a CA that did not sign the broker's certificate); a server that does
not answer is not (it may come back).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from pipeline.security import TemporalSecurity, connect_temporal
from replication.kafka_client import KafkaSecurity, client_options

TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Handshake:
    """The outcome of one handshake; ``refused`` means the configuration is wrong."""

    ok: bool
    refused: bool = False
    detail: str = ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _tls_failure(exc: ssl.SSLError, what: str, ca_variable: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "unknown reason"
        return (
            f"{what} TLS handshake failed: certificate verify failed ({reason}); "
            f"check {ca_variable} is the CA that signed the server's certificate"
        )
    return f"{what} TLS handshake failed: {_one_line(exc.reason or str(exc))}"


async def kafka_handshake(servers: str, security: KafkaSecurity) -> Handshake:
    """Connect (TLS, then SASL) to each bootstrap server until one answers."""
    last = Handshake(False, False, "no bootstrap server")
    for server in (s.strip() for s in servers.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        what = f"Kafka {server}"
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"),
                    int(port),
                    request_timeout_ms=int(TIMEOUT_S * 1000),
                    **client_options(security),
                ),
                TIMEOUT_S,
            )
        except ssl.SSLError as exc:
            return Handshake(False, True, _tls_failure(exc, what, "PIPELINE_KAFKA_SSL_CA_FILE"))
        except SaslAuthenticationFailed as exc:
            return Handshake(
                False,
                True,
                f"{what} SASL authentication failed ({security.sasl_mechanism} as "
                f"{security.sasl_username}): {_one_line(str(exc))}; check "
                "PIPELINE_KAFKA_SASL_USERNAME / PIPELINE_KAFKA_SASL_PASSWORD",
            )
        except UnsupportedSaslMechanismError as exc:
            return Handshake(
                False,
                True,
                f"{what} SASL handshake failed: the broker does not enable "
                f"{security.sasl_mechanism} ({_one_line(str(exc))}); "
                "check PIPELINE_KAFKA_SASL_MECHANISM",
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ssl.SSLError):
                return Handshake(
                    False, True, _tls_failure(cause, what, "PIPELINE_KAFKA_SSL_CA_FILE")
                )
            last = Handshake(False, False, f"{what}: {_one_line(repr(exc))}")
            continue
        conn.close()
        return Handshake(True, False, f"{what}: {security.describe()}")
    return last


async def temporal_handshake(address: str, namespace: str, security: TemporalSecurity) -> Handshake:
    """Connect to Temporal (TLS, then the API key on the first call)."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.service import RPCError

    try:
        client = await asyncio.wait_for(connect_temporal(address, namespace, security), TIMEOUT_S)
        # The first authenticated call: an API key is only judged here.
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace)
        )
    except (RPCError, RuntimeError, OSError, TimeoutError) as exc:
        return temporal_failure(address, exc, security)
    return Handshake(True, False, f"Temporal {address}: {security.describe()}")


def temporal_failure(address: str, exc: BaseException, security: TemporalSecurity) -> Handshake:
    """What a failed Temporal connect or call says about the handshake, in one line."""
    from temporalio.service import RPCError, RPCStatusCode

    what = f"Temporal {address}"
    if isinstance(exc, RPCError):
        if exc.status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
            return Handshake(
                False,
                True,
                f"{what} refused the credentials ({exc.status.name}): {_one_line(exc.message)}; "
                "check PIPELINE_TEMPORAL_API_KEY / the client certificate",
            )
        return Handshake(False, False, f"{what}: {_one_line(str(exc))}")
    # The SDK's core reports a connect failure as a RuntimeError whose text carries the
    # TLS library's reason (rustls: "invalid peer certificate: UnknownIssuer", ...). A
    # server that requires a client certificate may instead just close the stream during
    # the handshake ("broken pipe"); a server that is down refuses the connection.
    text = _one_line(str(exc))
    lowered = text.lower()
    if security.tls and ("connection closed" in lowered or "fatal alert" in lowered):
        # Temporal's server over TLS 1.3 checks the client certificate after the client
        # finished its handshake, then sends an alert (UnknownCA, CertificateRequired) or
        # just closes the connection: the first call sees one or the other.
        hint = (
            "the frontend may require a client certificate: set "
            "PIPELINE_TEMPORAL_TLS_CERT_FILE / PIPELINE_TEMPORAL_TLS_KEY_FILE"
            if security.cert_file is None
            else "check the client certificate is signed by a CA the frontend trusts"
        )
        return Handshake(
            False,
            True,
            f"{what} TLS handshake failed: the server refused the session; {hint} ({text})",
        )
    if security.tls and any(
        word in lowered
        for word in ("certificate", "unknownissuer", "tls", "handshake", "broken pipe")
    ):
        if "unknownissuer" in lowered or "invalid peer certificate" in lowered:
            reason = "certificate verify failed"
            hint = "check PIPELINE_TEMPORAL_TLS_CA_FILE is the CA that signed its certificate"
        else:
            reason = "TLS handshake failed"
            hint = "check the PIPELINE_TEMPORAL_TLS_* settings"
        return Handshake(False, True, f"{what} {reason}: {text}; {hint}")
    return Handshake(False, False, f"{what}: {text}")


async def refusal(
    kafka: tuple[str, KafkaSecurity] | None = None,
    temporal: tuple[str, str, TemporalSecurity] | None = None,
) -> str | None:
    """The one-line reason a TLS/SASL handshake was refused, or None.

    Run by the commands before they start (``run``, ``reader``, ``worker``, ``replay``,
    ``status``), so a wrong password or CA stops them with exit 2 instead of a retry
    loop or a traceback. Only secured connections are probed, Kafka and Temporal
    concurrently; a server that does not answer is no refusal (the command's own
    retries and errors deal with it). Temporal's client is imported only when a
    Temporal handshake is probed.
    """
    probes = []
    if kafka is not None and kafka[1].protocol != "PLAINTEXT":
        probes.append(kafka_handshake(*kafka))
    if temporal is not None and (temporal[2].tls or temporal[2].api_key):
        probes.append(temporal_handshake(*temporal))
    # Both at once: a restarted `pipeline run` waits for the slower, not for the sum.
    for shake in await asyncio.gather(*probes):
        if shake.refused:
            return shake.detail  # Kafka's first when both refuse
    return None

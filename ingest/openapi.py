"""The receiver's API described from its marshmallow schemas (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from ingest.messages import AcceptedSchema, ErrorSchema, WebhookBodySchema

_ERRORS = {
    "400": "Not JSON, or the body does not match the template (field errors listed)",
    "401": "Authenticity could not be established (JWT + X-Trusted-Context, or HMAC)",
    "404": "No connection has this id",
    "410": "The connection was disconnected",
    "413": "The body is too large",
    "415": "The body is not JSON",
    "422": "The object is not synced",
    "503": "The broker could not confirm in time; retry after Retry-After seconds",
}


def build_openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the receiver."""
    spec = APISpec(
        title="flexsync receiver",
        version=version,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={"description": "Sage Intacct webhooks in, durable RabbitMQ messages out."},
    )
    spec.components.schema("WebhookBody", schema=WebhookBodySchema)
    spec.components.schema("Accepted", schema=AcceptedSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.security_scheme("intacctJwt", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.security_scheme(
        "flexpointSignature", {"type": "apiKey", "in": "header", "name": "X-FlexPoint-Signature"}
    )
    error = {"content": {"application/json": {"schema": "Error"}}}
    spec.path(
        path="/webhooks/intacct/{connection_id}",
        operations={
            "post": {
                "summary": "Receive a Sage Intacct Platform Trigger webhook",
                "security": [{"intacctJwt": []}, {"flexpointSignature": []}],
                "parameters": [
                    {
                        "name": "connection_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    },
                    {
                        "name": "X-Trusted-Context",
                        "in": "header",
                        "schema": {"type": "string"},
                        "description": "base64 JSON with clientId and companyId (with a JWT)",
                    },
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                    {"name": "X-Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": "WebhookBody"}}},
                "responses": {
                    "202": {
                        "description": "Queued (confirmed by the broker)",
                        "content": {"application/json": {"schema": "Accepted"}},
                    },
                    "200": {
                        "description": "A duplicate of a delivery already queued",
                        "content": {"application/json": {"schema": "Accepted"}},
                    },
                    **{code: {"description": text, **error} for code, text in _ERRORS.items()},
                },
            }
        },
    )
    for path, summary in (("/healthz", "The process is up"), ("/readyz", "Broker and database reachable")):
        spec.path(
            path=path,
            operations={
                "get": {
                    "summary": summary,
                    "responses": {"200": {"description": "OK"}, "503": {"description": "Not ready", **error}},
                }
            },
        )
    # QUALITY S4: the ops endpoints beyond liveness and readiness ask for FLEXSYNC_METRICS_TOKEN.
    spec.components.security_scheme("metricsToken", {"type": "http", "scheme": "bearer"})
    guarded = {
        "401": {"description": "No FLEXSYNC_METRICS_TOKEN as a bearer token"},
        "404": {"description": "Not served: FLEXSYNC_METRICS_TOKEN is not set"},
    }
    for path, summary, answer in (
        ("/metrics", "Prometheus metrics", "Metrics"),
        ("/openapi.json", "This document", "The OpenAPI document"),
    ):
        spec.path(
            path=path,
            operations={
                "get": {
                    "summary": summary,
                    "security": [{"metricsToken": []}],
                    "responses": {"200": {"description": answer}, **guarded},
                }
            },
        )
    return spec.to_dict()

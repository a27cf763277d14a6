"""The real gateway plus one test route that calls the backbone's `ledger` service over RPC.

Why: the tracing test needs one HTTP request that causes an RPC and an event without a national
platform behind it; everything else (HTTP entrypoint, providers, RPC with deadline) is the
production gateway's.
"""

from __future__ import annotations

from nameko.rpc import RpcProxy
from werkzeug.wrappers import Request, Response

from gateway.http import api, json_response
from gateway.service import GatewayService


class TracingGateway(GatewayService):
    ledger = RpcProxy("ledger")

    @api("POST", "/v1/test/ledger/<tenant>")
    def record_entry(self, request: Request, tenant: str) -> Response:
        return json_response(self.call(self.ledger.record, tenant, 100), 201)

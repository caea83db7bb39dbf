"""A schema-only Terraform provider (plugin protocol 6) that serves a
`terraform providers schema -json`-shaped document, so that real Terraform core
(`validate`, and `plan` against no existing state) checks a configuration against
the provider's schema: unknown arguments/blocks, missing required ones, block
counts, attribute types, references to attributes.

It does no provider-side validation (the google provider's ValidateFunc /
CustomizeDiff) and calls no API. Plan marks unset computed attributes unknown.

usage (as the provider executable): stub_provider.py SCHEMA.json
Uses the protocol stubs and go-plugin handshake of the PyPI package `tf`.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from concurrent import futures

import grpc
from tf.gen import grpc_controller_pb2 as controller_pb
from tf.gen import grpc_controller_pb2_grpc as controller_rpc
from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc
from tf.gen import tfplugin_pb2 as pb
from tf.gen import tfplugin_pb2_grpc as rpc
from tf.runner import _self_signed_cert
from tf.types import Unknown
from tf.utils import read_dynamic_value, to_dynamic_value

NESTING = {
    "single": pb.Schema.NestedBlock.SINGLE,
    "list": pb.Schema.NestedBlock.LIST,
    "set": pb.Schema.NestedBlock.SET,
    "map": pb.Schema.NestedBlock.MAP,
    "group": pb.Schema.NestedBlock.GROUP,
}


def block_pb(block: dict) -> pb.Schema.Block:
    attrs = [
        pb.Schema.Attribute(
            name=name,
            type=json.dumps(a["type"]).encode(),
            required=bool(a.get("required")),
            optional=bool(a.get("optional")),
            computed=bool(a.get("computed")),
            sensitive=bool(a.get("sensitive")),
            deprecated=bool(a.get("deprecated")),
            description=a.get("description", ""),
        )
        for name, a in sorted(block.get("attributes", {}).items())
    ]
    blocks = [
        pb.Schema.NestedBlock(
            type_name=name,
            block=block_pb(b.get("block", {})),
            nesting=NESTING[b["nesting_mode"]],
            min_items=b.get("min_items", 0),
            max_items=b.get("max_items", 0),
        )
        for name, b in sorted(block.get("block_types", {}).items())
    ]
    return pb.Schema.Block(attributes=attrs, block_types=blocks, deprecated=bool(block.get("deprecated")))


def mark_unknown(value, block: dict):
    """Unset computed attributes of a planned create become unknown."""
    if not isinstance(value, dict):
        return value
    for name, a in block.get("attributes", {}).items():
        if a.get("computed") and value.get(name) is None:
            value[name] = Unknown
    for name, b in block.get("block_types", {}).items():
        v = value.get(name)
        if isinstance(v, list):
            value[name] = [mark_unknown(x, b.get("block", {})) for x in v]
        elif isinstance(v, dict):
            if b["nesting_mode"] == "map":
                value[name] = {k: mark_unknown(x, b.get("block", {})) for k, x in v.items()}
            else:
                value[name] = mark_unknown(v, b.get("block", {}))
    return value


class Servicer(rpc.ProviderServicer):
    def __init__(self, schema: dict):
        self.schema = schema
        self.resources = schema.get("resource_schemas", {})
        self.data_sources = schema.get("data_source_schemas", {})

    def _schema(self, s: dict) -> pb.Schema:
        return pb.Schema(version=s.get("version", 0), block=block_pb(s.get("block", {})))

    def GetMetadata(self, request, context):
        return pb.GetMetadata.Response(
            server_capabilities=pb.ServerCapabilities(plan_destroy=True),
            resources=[pb.GetMetadata.ResourceMetadata(type_name=t) for t in self.resources],
            data_sources=[pb.GetMetadata.DataSourceMetadata(type_name=t) for t in self.data_sources],
        )

    def GetProviderSchema(self, request, context):
        return pb.GetProviderSchema.Response(
            provider=self._schema(self.schema.get("provider", {})),
            provider_meta=pb.Schema(block=pb.Schema.Block()),
            resource_schemas={t: self._schema(s) for t, s in self.resources.items()},
            data_source_schemas={t: self._schema(s) for t, s in self.data_sources.items()},
        )

    def ValidateProviderConfig(self, request, context):
        return pb.ValidateProviderConfig.Response()

    def ValidateResourceConfig(self, request, context):
        return pb.ValidateResourceConfig.Response()

    def ValidateDataResourceConfig(self, request, context):
        return pb.ValidateDataResourceConfig.Response()

    def ConfigureProvider(self, request, context):
        return pb.ConfigureProvider.Response()

    def UpgradeResourceState(self, request, context):
        return pb.UpgradeResourceState.Response(upgraded_state=pb.DynamicValue(json=request.raw_state.json or b"null"))

    def ReadResource(self, request, context):
        return pb.ReadResource.Response(new_state=request.current_state, private=request.private)

    def PlanResourceChange(self, request, context):
        proposed = read_dynamic_value(request.proposed_new_state)
        prior = read_dynamic_value(request.prior_state)
        if proposed is not None and prior is None:
            proposed = mark_unknown(proposed, self.resources[request.type_name]["block"])
        return pb.PlanResourceChange.Response(planned_state=to_dynamic_value(proposed))

    def ReadDataSource(self, request, context):
        config = read_dynamic_value(request.config)
        config = mark_unknown(config, self.data_sources[request.type_name]["block"])
        return pb.ReadDataSource.Response(state=to_dynamic_value(config))

    def StopProvider(self, request, context):
        return pb.StopProvider.Response()


def main() -> None:
    with open(sys.argv[1]) as handle:
        doc = json.load(handle)
    schema = next(iter(doc["provider_schemas"].values())) if "provider_schemas" in doc else doc
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rpc.add_ProviderServicer_to_server(Servicer(schema), server)

    class Controller(controller_rpc.GRPCControllerServicer):
        def Shutdown(self, request, context):
            server.stop(grace=0)
            return controller_pb.Empty()

    class Stdio(stdio_rpc.GRPCStdioServicer):
        def StreamStdio(self, request, context):
            return iter([])

    controller_rpc.add_GRPCControllerServicer_to_server(Controller(), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(Stdio(), server)
    with tempfile.TemporaryDirectory() as tmp:
        sock = f"{tmp}/plugin.sock"
        chain, creds = _self_signed_cert()
        server.add_secure_port(f"unix://{sock}", creds)
        server.start()
        print(f"1|6|unix|{sock}|grpc|{base64.b64encode(chain).decode().rstrip('=')}", flush=True)
        server.wait_for_termination()


if __name__ == "__main__":
    main()

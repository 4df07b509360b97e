"""The OpenAPI schema is enough to integrate: every operation says what it does, every money,
memory and time field says its unit, the funding operation says the order of calls, and the
operations that lead to each other are linked. Generated the way /api/schema/ generates it,
postprocessing hooks included."""

import re

import pytest
from drf_spectacular.generators import SchemaGenerator

from marketplace.core import schema_docs

# This test's own reading of a field name, kept apart from the hook's rule so that a change to
# one cannot quietly agree with a change to the other.
KINDS = [
    ("money", r"(amount|price|bid|floor_per|rate_per|escrow(?!_address)|refund|owed|stake)"),
    ("memory", r"(memory|ram|_gb$|_gib$|_gbps$|_bytes$|^(input|result)_size$)"),
    ("time", r"(_at$|_seconds$|_ms$|^hours$|deadline|_time$|^wait$|duration)"),
]
UNITS = {
    "money": re.compile(r"token units|\bUSD\b", re.I),
    "memory": re.compile(r"\bGB\b|\bGiB\b|\bbytes\b|Gbit/s|GB/s", re.I),
    "time": re.compile(r"\bUTC\b|seconds?\b|\bhours?\b|milliseconds|unix time", re.I),
}


def _kind(name: str) -> str | None:
    if name.endswith(("_id", "_address", "_calldata")):
        return None
    return next((kind for kind, pattern in KINDS if re.search(pattern, name)), None)


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _resolve(schema, node):
    while isinstance(node, dict) and "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_every_operation_has_a_summary_and_a_description(schema):
    missing = [
        f"{method} {path} ({op['operationId']}): "
        + ", ".join(k for k in ("summary", "description") if not op.get(k, "").strip())
        for method, path, op in _operations(schema)
        if not op.get("summary", "").strip() or not op.get("description", "").strip()
    ]
    assert not missing, "operations without words:\n" + "\n".join(missing)


def test_every_money_memory_and_time_parameter_and_field_says_its_unit(schema):
    missing = []
    for method, path, op in _operations(schema):
        for parameter in op.get("parameters", []):
            kind = _kind(parameter["name"])
            if kind and not UNITS[kind].search(parameter.get("description", "")):
                missing.append(f"parameter {parameter['name']} of {method} {path} ({kind})")
    for component, body in schema["components"]["schemas"].items():
        for name, field in (body.get("properties") or {}).items():
            kind = _kind(name)
            if kind and not UNITS[kind].search(field.get("description", "")):
                missing.append(f"field {component}.{name} ({kind})")
    assert not missing, "no unit:\n" + "\n".join(missing)


def test_the_funding_operation_says_approve_then_fund_and_the_deadline(schema):
    funding = schema["paths"]["/api/v1/orders/{order_id}/funding"]["get"]["description"]
    assert "approve" in funding and "fund_calldata" in funding
    assert funding.index("approve") < funding.index("fund_calldata")
    assert "funding_deadline" in funding and "UTC" in funding


def _links(schema, operation_id):
    for _, _, op in _operations(schema):
        if op["operationId"] == operation_id:
            found = {}
            for status, response in op["responses"].items():
                if status.startswith("2"):
                    found.update(response.get("links", {}))
            return found
    raise AssertionError(f"no operation {operation_id}")


@pytest.mark.parametrize(
    "chain",
    [
        ["v1_orders_create", "v1_orders_retrieve", "v1_orders_funding_retrieve"],
        ["v1_orders_create", "v1_orders_retrieve", "v1_orders_stop_create"],
        ["v1_agent_register_create", "v1_agent_heartbeat_create", "v1_agent_jobs_next_retrieve"],
    ],
)
def test_links_lead_from_one_operation_to_the_next(schema, chain):
    for source, target in zip(chain, chain[1:], strict=False):
        targets = {link["operationId"] for link in _links(schema, source).values()}
        assert target in targets, f"{source} does not link to {target}"


def test_every_link_names_a_real_operation_parameter_and_response_field(schema):
    """A link a client cannot follow is worse than none: its target exists, its parameters are
    the target's path parameters, and its `$response.body#/x` names a field of the answer."""
    by_id = {op["operationId"]: (path, op) for _, path, op in _operations(schema)}
    checked = 0
    for _, _, op in _operations(schema):
        for response in op["responses"].values():
            for name, link in response.get("links", {}).items():
                path, target = by_id[link["operationId"]]
                path_params = set(re.findall(r"{(\w+)}", path))
                for parameter, expression in link.get("parameters", {}).items():
                    assert parameter in path_params, (op["operationId"], name, parameter)
                    pointer = re.fullmatch(r"\$response\.body#/(\w+)", expression)
                    if pointer:
                        body = _resolve(
                            schema,
                            response["content"]["application/json"]["schema"],
                        )
                        assert pointer.group(1) in body["properties"], (op["operationId"], name)
                    checked += 1
    assert checked >= 10


def test_the_hook_fills_only_what_a_view_left_empty():
    result = {
        "paths": {
            "/x": {
                "get": {
                    "operationId": "v1_listings_retrieve",
                    "summary": "The view's own summary",
                    "description": "",
                    "parameters": [{"name": "max_price", "description": "Cheapest first."}],
                }
            }
        },
        "components": {"schemas": {"A": {"properties": {"ended_at": {"type": "string"}}}}},
    }
    schema_docs.document_operations(result, None, None, True)
    operation = result["paths"]["/x"]["get"]
    assert operation["summary"] == "The view's own summary"
    assert operation["description"] == schema_docs.OPERATIONS["v1_listings_retrieve"][1]
    assert operation["parameters"][0]["description"].startswith("Cheapest first.")
    assert "token units" in operation["parameters"][0]["description"].lower()
    assert result["components"]["schemas"]["A"]["properties"]["ended_at"]["description"] == (
        "UTC, ISO 8601."
    )

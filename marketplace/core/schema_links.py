"""OpenAPI links between operations that lead to each other, so a client generator (and a
stateful fuzzer such as Schemathesis) can follow a whole lease: create order → get order →
funding → stop, and an agent's register → heartbeat → next job. A postprocessing hook keyed by
operationId, so it works whoever owns the views, and a link to an operation that is not in the
schema is left out rather than dangling."""

ORDER_ID = {"order_id": "$response.body#/id"}

# source operationId → [(link name, target operationId, parameters, requestBody, description)]
LINKS: dict[str, list[tuple[str, str, dict, object, str]]] = {
    "v1_listings_list": [
        (
            "GetListing",
            "v1_listings_retrieve",
            {"listing_id": "$response.body#/results/0/id"},
            None,
            "The first listing found.",
        ),
    ],
    "v1_listings_retrieve": [
        (
            "CreateOrder",
            "v1_orders_create",
            {},
            {"listing_id": "$response.body#/id"},
            "Rent accelerators of this listing (set pricing_mode, accelerators, hours).",
        ),
    ],
    "v1_orders_create": [
        ("GetOrder", "v1_orders_retrieve", ORDER_ID, None, "The order just created."),
        (
            "GetFunding",
            "v1_orders_funding_retrieve",
            ORDER_ID,
            None,
            "What to sign to pay for it: approve, then fund, before funding_deadline.",
        ),
        ("CancelOrder", "v1_orders_cancel_create", ORDER_ID, None, "Cancel it before it starts."),
    ],
    "v1_orders_retrieve": [
        ("GetFunding", "v1_orders_funding_retrieve", ORDER_ID, None, "Pay for a created order."),
        ("StopOrder", "v1_orders_stop_create", ORDER_ID, None, "End an active lease now."),
        ("CancelOrder", "v1_orders_cancel_create", ORDER_ID, None, "Cancel before it starts."),
        ("GetOrderChain", "v1_orders_chain_retrieve", ORDER_ID, None, "Its escrow events."),
        (
            "SubmitWorkload",
            "v1_orders_workloads_create",
            ORDER_ID,
            None,
            "Run a command on the active lease.",
        ),
    ],
    "v1_orders_funding_retrieve": [
        (
            "GetOrder",
            "v1_orders_retrieve",
            {"order_id": "$response.body#/order_id"},
            None,
            "Poll the order until it is funded, then active.",
        ),
    ],
    "v1_orders_stop_create": [
        ("GetOrder", "v1_orders_retrieve", ORDER_ID, None, "Follow it to settled."),
        ("GetOrderChain", "v1_orders_chain_retrieve", ORDER_ID, None, "Its settlement."),
    ],
    "v1_orders_cancel_create": [
        ("GetOrder", "v1_orders_retrieve", ORDER_ID, None, "Follow it to settled."),
    ],
    "v1_providers_create": [
        (
            "CreateRegistrationToken",
            "v1_providers_registration_tokens_create",
            {"provider_id": "$response.body#/id"},
            None,
            "A token for the first machine's agent.",
        ),
    ],
    "v1_providers_registration_tokens_create": [
        (
            "RegisterMachine",
            "v1_agent_register_create",
            {},
            {"registration_token": "$response.body#/registration_token"},
            "The agent exchanges the token for its credential.",
        ),
    ],
    "v1_agent_register_create": [
        (
            "Heartbeat",
            "v1_agent_heartbeat_create",
            {},
            None,
            "With the credential just returned: beat every few seconds.",
        ),
        ("NextJob", "v1_agent_jobs_next_retrieve", {}, None, "Then ask for benchmark jobs."),
    ],
    "v1_agent_heartbeat_create": [
        ("NextJob", "v1_agent_jobs_next_retrieve", {}, None, "The next benchmark job."),
        ("NextWorkload", "v1_agent_workloads_next_create", {}, None, "The next workload."),
    ],
    "v1_agent_jobs_next_retrieve": [
        (
            "Commit",
            "v1_agent_jobs_commitment_create",
            {"job_id": "$response.body#/id"},
            None,
            "Commit to the result (int8 Merkle jobs).",
        ),
        (
            "Sketch",
            "v1_agent_jobs_sketch_create",
            {"job_id": "$response.body#/id"},
            None,
            "Send the chain job's sketch (floating-point jobs).",
        ),
    ],
    "v1_agent_jobs_sketch_create": [
        (
            "GetJob",
            "v1_agent_jobs_retrieve",
            {"job_id": "$request.path.job_id"},
            None,
            "The job's verdict once verified.",
        ),
    ],
    "v1_agent_jobs_commitment_create": [
        (
            "GetChallenge",
            "v1_agent_jobs_challenge_retrieve",
            {"job_id": "$request.path.job_id"},
            None,
            "The challenge drawn after the commitment.",
        ),
    ],
    "v1_agent_jobs_challenge_retrieve": [
        (
            "Answer",
            "v1_agent_jobs_answer_create",
            {"job_id": "$request.path.job_id"},
            None,
            "Answer it before the deadline.",
        ),
    ],
    "v1_webhooks_create": [
        (
            "ListDeliveries",
            "v1_webhooks_deliveries_list",
            {"endpoint_id": "$response.body#/id"},
            None,
            "The delivery log of the endpoint.",
        ),
        (
            "RotateSecret",
            "v1_webhooks_rotate_secret_create",
            {"endpoint_id": "$response.body#/id"},
            None,
            "Replace its signing secret.",
        ),
    ],
}


def add_links(result, generator, request, public):
    """drf-spectacular postprocessing hook: adds `links` to each 2xx response of the sources."""
    operations = {
        op.get("operationId"): op
        for path_item in result.get("paths", {}).values()
        for op in path_item.values()
        if isinstance(op, dict)
    }
    for source, links in LINKS.items():
        operation = operations.get(source)
        if operation is None:
            continue
        for status, response in operation.get("responses", {}).items():
            if not (status.startswith("2") and status != "204"):
                continue
            found = response.setdefault("links", {})
            for name, target, parameters, body, description in links:
                if target not in operations:
                    continue
                link = {"operationId": target, "description": description}
                if parameters:
                    link["parameters"] = parameters
                if body is not None:
                    link["requestBody"] = body
                found.setdefault(name, link)
    return result

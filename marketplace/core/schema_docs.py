"""OpenAPI: a summary and a description for every operation, and the unit of every money,
memory and time field and parameter, so an integrator never has to read the source.

Views document themselves with extend_schema where their app's owner wrote it; this hook fills
only what a view left empty: the operations below (keyed by operationId) and, by field name,
the units. It never overwrites a view's own words; a field description that names no unit gets
the unit appended. tests/api_docs/test_schema_docs.py fails when an operation or a unit is
missing, so a new endpoint is documented in the commit that adds it."""

import re

MONEY = "Token units (6 decimals: 1,000,000 units = 1 USD)"
MONEY_PER_ACCELERATOR_HOUR = f"{MONEY} per accelerator-hour."
UTC_TIME = "UTC, ISO 8601."

# Field or parameter name → its unit, said once for every serializer that uses the name.
FIELD_UNITS: dict[str, str] = {
    # money
    "amount": f"{MONEY}.",
    "amount_owed": f"{MONEY}: what the provider earns for the lease, before the platform fee.",
    "amount_owed_now": f"{MONEY}: what the lease has cost up to now, to the second.",
    "escrow_amount": f"{MONEY}: the whole deposit for the lease.",
    "refund_amount": f"{MONEY} returned to the renter at settlement.",
    "staked": f"{MONEY}, as a decimal string.",
    "pending_unstake": f"{MONEY}, as a decimal string.",
    "price_per_hour": MONEY_PER_ACCELERATOR_HOUR,
    "bid_per_hour": MONEY_PER_ACCELERATOR_HOUR,
    "interruptible_floor_per_hour": MONEY_PER_ACCELERATOR_HOUR,
    "max_price": f"{MONEY} per accelerator-hour (on-demand price).",
    "price_per_tflop_hour": f"{MONEY} per verified TFLOPS per hour.",
    "rate_per_second": f"{MONEY} per second for the whole lease (all its accelerators).",
    "reserved_prices": f"Reserved term → price, in {MONEY.lower()} per accelerator-hour.",
    # memory and sizes
    "accelerator_memory_gb": "GB of memory per accelerator.",
    "memory_gb": "GB of memory per accelerator.",
    "memory_per_accelerator_gb": "GB of memory per accelerator.",
    "min_memory": "GB of memory per accelerator, at least.",
    "ram_gib": "GiB of host memory.",
    "storage_gb": "GB of local storage.",
    "input_size": "Bytes.",
    "result_size": "Bytes.",
    "log_bytes": "Bytes.",
    "network_gbps": "Gbit/s.",
    # durations
    "hours": "Hours (whole hours).",
    "duration_seconds": "Seconds.",
    "max_duration_seconds": "Seconds.",
    "billable_seconds": "Seconds billed.",
    "used_seconds": "Seconds the lease has run so far.",
    "time_limit_seconds": "Seconds.",
    "seconds_left": "Seconds.",
    "agent_seconds": "Seconds, as the agent measured them.",
    "measured_seconds": "Seconds, as the server measured them.",
    "duration_ms": "Milliseconds.",
    "wait": "Seconds.",
    "unlock_time": "Unix time (seconds since 1970-01-01 UTC), as the chain keeps it.",
}

# The words that say a unit, per kind; a description of a field of that kind needs one.
UNIT_WORDS = {
    "money": ("token units", "usd"),
    "memory": ("gb", "gib", "bytes", "gbit/s"),
    "time": ("utc", "second", "hour", "milliseconds", "unix time"),
}


def field_kind(name: str) -> str | None:
    """money, memory or time, from the field name (the test and the hook share this rule)."""
    if name.endswith(("_address", "_calldata", "_id")):
        return None
    if re.search(r"(amount|price|bid_per|_floor_per|rate_per|escrow|refund|owed|stake)", name):
        return "money"
    if re.search(r"(memory|ram_gib|_gb$|_gib$|_gbps$|_bytes$|^(input|result)_size$)", name):
        return "memory"
    if re.search(r"(_at$|_seconds$|_ms$|^hours$|deadline|_time$|^wait$)", name):
        return "time"
    return None


def says_unit(kind: str, description: str) -> bool:
    text = description.lower()
    return any(word in text for word in UNIT_WORDS[kind])


def unit_for(name: str) -> str | None:
    if name in FIELD_UNITS:
        return FIELD_UNITS[name]
    if field_kind(name) == "time" and (name.endswith("_at") or "deadline" in name):
        return UTC_TIME
    if name.endswith("_time"):
        return UTC_TIME
    return None


def _with_unit(name: str, description: str) -> str:
    kind = field_kind(name)
    if kind is None or says_unit(kind, description):
        return description
    unit = unit_for(name)
    if unit is None:
        return description
    return f"{description.rstrip()} ({unit.rstrip('.')})." if description else unit


# Operations of apps whose views do not carry their own words yet, by operationId. Filled only
# where the view left summary or description empty.
OPERATIONS: dict[str, tuple[str, str]] = {
    # providers
    "v1_providers_list": (
        "List your providers",
        "The provider accounts you own (staff: all). A provider is the wallet that receives "
        "payouts and holds the stake.",
    ),
    "v1_providers_create": (
        "Create a provider",
        "A provider under your account with the wallet (EIP-55 address) that is paid and "
        "staked on chain. Provider owners only.",
    ),
    "v1_providers_retrieve": ("Get a provider", "One of your providers (404 for anyone else's)."),
    "v1_providers_registration_tokens_create": (
        "Create a machine registration token",
        "A one-time secret for one machine's agent, shown this once and valid until "
        "`expires_at` (UTC). The agent exchanges it at POST /api/v1/agent/register for its own "
        "credential.",
    ),
    "v1_machines_list": (
        "List your machines",
        "Machines of your providers, with state (registered → verified → listed; suspended; "
        "offline), hardware, what the platform verified and the last heartbeat (UTC). "
        "Filterable by state and provider.",
    ),
    "v1_machines_retrieve": ("Get a machine", "One of your machines (404 for anyone else's)."),
    "v1_machines_suspend_create": (
        "Suspend a machine (staff)",
        "Takes a machine off the market with a reason (kept in its history). Staff only.",
    ),
    "v1_agent_register_create": (
        "Register a machine (agent)",
        "The agent's first call: exchanges a registration token and the detected hardware for "
        "the machine's id and its agent credential (shown once; send it as "
        "`Authorization: Token …`; the user API refuses it). Next: POST "
        "/api/v1/agent/heartbeat every few seconds, and GET /api/v1/agent/jobs/next for "
        "benchmark jobs.",
    ),
    "v1_agent_heartbeat_create": (
        "Heartbeat (agent)",
        "Tells the server the machine is up; a machine silent for the heartbeat timeout (90 s "
        "by default) goes offline and its leases fail. Answers the machine's state and the "
        "server's time (UTC). Next: GET /api/v1/agent/jobs/next.",
    ),
    "v1_agent_machine_retrieve": (
        "Get the agent's own machine",
        "The machine this agent credential acts for, as its owner sees it.",
    ),
    # listings
    "v1_listings_list": (
        "Search listings",
        "Public search over listings on verified machines, with verified throughput, prices "
        "and free accelerators. No credentials needed.",
    ),
    "v1_listings_create": (
        "Publish a listing",
        "Offers a verified machine's accelerators at your prices (token units per "
        "accelerator-hour). The listing's hardware figures are copied from what the platform "
        "verified, never from the owner's word.",
    ),
    "v1_listings_retrieve": (
        "Get a listing",
        "One listing with its verified figures and prices; what a renter reads before POST "
        "/api/v1/orders. No credentials needed.",
    ),
    "v1_listings_mine_list": ("List your listings", "The listings of your machines."),
    "v1_listings_prices_partial_update": (
        "Change a listing's prices",
        "New on-demand, reserved and interruptible-floor prices in token units per "
        "accelerator-hour; running leases keep the price they were ordered at.",
    ),
    "v1_listings_status_create": (
        "Pause, resume or close a listing",
        "Changes whether the listing takes new orders; running leases are not affected.",
    ),
    # benchmarks (agent protocol)
    "v1_agent_jobs_next_retrieve": (
        "Take the next benchmark job (agent)",
        "The job the agent should run now, with its kernel, size, precision and seed, or 204 "
        "when there is none. `wait` (seconds, 0–25) long-polls. The dispatch time starts the clock "
        "the throughput is measured with.",
    ),
    "v1_agent_jobs_retrieve": (
        "Get a benchmark job (agent)",
        "One of this machine's jobs, as the agent sees it.",
    ),
    "v1_agent_jobs_commitment_create": (
        "Commit to a job's result (agent, int8 Merkle jobs)",
        "For a job whose spec kind is `matmul` or `conv2d` (exact integers): the Merkle root of "
        "the result; the span from dispatch to this commitment is the measured time. Next: GET "
        "…/challenge.",
    ),
    "v1_agent_jobs_sketch_create": (
        "Answer a chain job with its sketch (agent)",
        "For a job whose spec kind is `matmul_chain` or `conv2d_chain` (every floating-point "
        "precision): the sketch Y = X_L·V of the L-layer chain, little-endian float32 in "
        "base64, with the agent's own time (seconds) and the device's UUID. One message: the "
        "span from dispatch to its arrival is the measured time, and the server then recomputes "
        "units it draws itself. 202 with the job's state; the verdict follows (GET "
        "…/jobs/{job_id}).",
    ),
    "v1_agent_jobs_challenge_retrieve": (
        "Get a job's challenge (agent)",
        "The random vector and row indices drawn after the commitment. Next: POST …/answer "
        "before the job's deadline (UTC).",
    ),
    "v1_agent_jobs_answer_create": (
        "Answer a job's challenge (agent)",
        "The challenged rows with their Merkle proofs and the projection; the server checks "
        "them and records a verdict.",
    ),
    "v1_reports_retrieve": (
        "Get a verification report (public)",
        "The report a verdict's hash on chain (a slash, a failed lease, a reward) is the SHA-256 "
        "of: `document` (spec, seed, commitment, challenge or sampled units, outcome), whose "
        "canonical JSON (sorted keys, no spaces, ASCII) hashes to `report_hash`, and for a "
        "failure the agent's answer that was judged (`evidence`). Anyone can check the hash and "
        "run the verification again: `python benchmarks/audit.py`. 404 for a hash no decided "
        "verification has.",
    ),
    "v1_machines_benchmarks_retrieve": (
        "Get a machine's benchmark scores",
        "Verified throughput per kernel and precision (TFLOPS), recent jobs and reputation, "
        "for the machine's owner and staff.",
    ),
    # workloads
    "v1_orders_workloads_list": (
        "List a lease's workloads",
        "The workloads submitted to this lease, newest first. For the order's renter.",
    ),
    "v1_orders_workloads_create": (
        "Submit a workload to a lease",
        "A command to run on the leased machine (JSON, or multipart with an input archive), "
        "with a time limit in seconds. The machine's agent picks it up within seconds.",
    ),
    "v1_orders_workloads_retrieve": ("Get a workload", "One workload of the lease, with state."),
    "v1_orders_workloads_logs_retrieve": (
        "Read a workload's output",
        "Output from `offset` (bytes) on, and the offset to ask for next.",
    ),
    "v1_orders_workloads_cancel_create": (
        "Cancel a workload",
        "Stops a queued or running workload; the agent kills it.",
    ),
    "v1_orders_workloads_results_retrieve": (
        "Download a workload's results",
        "The result archive (tar.gz) the agent uploaded when the workload finished.",
    ),
    "v1_agent_workloads_next_create": (
        "Take the next workload (agent)",
        "The next queued workload on this machine's leases, or none.",
    ),
    "v1_agent_workloads_retrieve": (
        "Get a workload (agent)",
        "One workload on this machine, as the agent runs it.",
    ),
    "v1_agent_workloads_input_retrieve": (
        "Download a workload's input (agent)",
        "The input archive the renter submitted; check its sha256 before use.",
    ),
    "v1_agent_workloads_start_create": (
        "Mark a workload started (agent)",
        "The workload began running on the machine.",
    ),
    "v1_agent_workloads_ping_create": (
        "Keep a workload alive (agent)",
        "Says the workload is still running when it is quiet; answers whether it was cancelled.",
    ),
    "v1_agent_workloads_logs_create": (
        "Upload workload output (agent)",
        "One ordered chunk of output; a chunk resent with the same seq is stored once.",
    ),
    "v1_agent_workloads_finish_create": (
        "Finish a workload (agent)",
        "The outcome, exit code and the result archive.",
    ),
}


def _fill_properties(schema: dict) -> None:
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        described = _with_unit(name, prop.get("description", ""))
        if described:
            prop["description"] = described


def document_operations(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            summary, description = OPERATIONS.get(operation.get("operationId"), ("", ""))
            if not operation.get("summary") and summary:
                operation["summary"] = summary
            if not operation.get("description") and description:
                operation["description"] = description
            for parameter in operation.get("parameters", []):
                described = _with_unit(parameter["name"], parameter.get("description", ""))
                if described:
                    parameter["description"] = described
    for schema in result.get("components", {}).get("schemas", {}).values():
        _fill_properties(schema)
    return result

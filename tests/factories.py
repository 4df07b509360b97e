import factory

from marketplace.accounts.models import User
from marketplace.listings.models import Listing
from marketplace.payments.models import ChainEvent, ChainTransaction
from marketplace.providers.models import Machine, Provider

WALLETS = [
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    role = User.Role.RENTER
    password = factory.django.Password("correct horse battery")


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provider

    owner = factory.SubFactory(UserFactory, role=User.Role.PROVIDER_OWNER)
    name = factory.Sequence(lambda n: f"provider {n}")
    wallet_address = factory.Iterator(WALLETS)


class MachineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Machine

    provider = factory.SubFactory(ProviderFactory)
    name = factory.Sequence(lambda n: f"box-{n}")
    state = Machine.State.VERIFIED
    accelerator_kind = Machine.AcceleratorKind.GPU
    accelerator_vendor = "NVIDIA"
    accelerator_model = "H100 80GB HBM3"
    accelerator_count = 8
    accelerator_memory_gb = 80
    vcpu_count = 192
    ram_gib = 2048
    hardware = factory.LazyFunction(dict)
    # As a passed onboarding suite leaves it: every claimed device verified, each by its own
    # identity, in every precision of an H100's suite.
    verified_devices = factory.LazyAttribute(
        lambda m: [{"index": i, "uuid": f"GPU-{m.name}-{i}"} for i in range(m.accelerator_count)]
    )
    verified_device_count = factory.SelfAttribute("accelerator_count")
    verified_precisions = factory.LazyFunction(lambda: ["bf16", "fp16", "fp32", "int8", "tf32"])


class ListingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Listing

    machine = factory.SubFactory(MachineFactory, state=Machine.State.LISTED)
    provider = factory.SelfAttribute("machine.provider")
    status = Listing.Status.ACTIVE
    is_searchable = True
    accelerator_kind = "gpu"
    vendor = "NVIDIA"
    model = "H100 80GB HBM3"
    accelerator_count = 8
    memory_per_accelerator_gb = 80
    memory_bandwidth_gbps = 3350
    interconnect = "nvlink"
    precisions = ",bf16,fp16,fp32,fp8,int8,tf32,"
    vcpu_count = 192
    ram_gib = 2048
    storage_gb = 30000
    network_gbps = 3200
    region = "eu-west"
    price_per_hour = 2_498_400
    interruptible_floor_per_hour = 1_000_800


class ChainEventFactory(factory.django.DjangoModelFactory):
    """A contract log as the indexer stores it: final unless told, one per block (its hashes
    derived from the block number), its uint arguments as decimal strings."""

    class Meta:
        model = ChainEvent

    chain_id = 31337
    contract = "escrow"
    address = "0x" + "e5" * 20
    name = "LeaseFunded"
    block_number = factory.Sequence(lambda n: n + 1)
    tx_hash = factory.LazyAttribute(lambda e: "0x" + f"{e.block_number:064x}")
    log_index = 0
    block_hash = factory.LazyAttribute(lambda e: "0x" + f"{e.block_number + 1_000:064x}")
    args = factory.LazyFunction(dict)
    is_final = True

    @classmethod
    def _adjust_kwargs(cls, **kwargs):
        kwargs["args"] = {
            key: value if isinstance(value, str) else str(value)
            for key, value in kwargs["args"].items()
        }
        return kwargs


class ChainTransactionFactory(factory.django.DjangoModelFactory):
    """A transaction of ours as the chain services record it: signed (the bytes are not read
    here), its purpose the prefix of its idempotency key, a nonce and hash of its own."""

    class Meta:
        model = ChainTransaction

    chain_id = 31337
    sender = "0x" + "11" * 20
    nonce = factory.Sequence(lambda n: n)
    purpose = factory.LazyAttribute(lambda t: t.idempotency_key.split(":")[0])
    idempotency_key = factory.Sequence(lambda n: f"lease_settle:{n}")
    raw_tx = "0x00"
    # "0x7a…": never the hash ChainEventFactory derives from a block number (zero-led), so a
    # transaction is the effect of an event only when a test says so.
    tx_hash = factory.LazyAttribute(lambda t: "0x7a" + f"{t.nonce:062x}")

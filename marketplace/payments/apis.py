import requests
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.core.errors import ApplicationError
from marketplace.core.schema import UNAVAILABLE
from marketplace.payments import credits, selectors, staking
from marketplace.payments.serializers import (
    CreditOutputSerializer,
    FundingOutputSerializer,
    OrderChainOutputSerializer,
    ProviderChainOutputSerializer,
    StakingOutputSerializer,
)


class OrderFundingApi(APIView):
    @extend_schema(
        summary="Get funding instructions for an order",
        description="What the renter signs to pay for a created order, from the wallet that "
        "holds the payment token. Two transactions, in this order: (1) `approve_calldata` sent "
        "to `token_address` (token.approve(escrow, amount)), then, once it is mined, (2) "
        "`fund_calldata` sent to `escrow_address` (escrow.fund(lease_id, provider_wallet, "
        "amount, rate_per_second, max_duration_seconds)). Both before `funding_deadline` (UTC; "
        "the order's hold, 600 s after creation by default): until then the order holds its "
        "accelerators; after it the order is cancelled and a deposit seen later is refunded in "
        "full. The order becomes `funded` when the indexer sees the deposit (a few blocks), "
        "then `active` when the lease starts: poll GET /api/v1/orders/{order_id} or subscribe "
        "to the `lease.active` webhook. Amounts are token units (6 decimals: 1,000,000 units "
        "= 1 USD). Only the order's renter may call this, and only while the order is "
        "`created` (409 otherwise).",
        responses={200: FundingOutputSerializer},
    )
    def get(self, request, order_id: int):
        try:
            data = selectors.order_funding_instructions(user=request.user, order_id=order_id)
        except (requests.ConnectionError, requests.Timeout) as exc:
            # The instructions name the chain and its contracts, read from the node: a node
            # that is down is a 503 the client can retry, not a 500.
            raise ApplicationError(
                UNAVAILABLE, code="payments_chain_unavailable", status_code=503
            ) from exc
        return Response(FundingOutputSerializer(data).data)


class OrderChainApi(APIView):
    @extend_schema(
        summary="Get an order's on-chain story",
        description="The escrow contract's events for this lease (deposit, start, settlement), "
        "the settlement transaction and the verification report hashes a failed lease cites. "
        "Amounts in event arguments are token units as decimal strings. For the renter, the "
        "provider owner and staff.",
        responses={200: OrderChainOutputSerializer},
    )
    def get(self, request, order_id: int):
        data = selectors.order_chain_state(user=request.user, order_id=order_id)
        return Response(OrderChainOutputSerializer(data).data)


class ProviderChainApi(APIView):
    # Stakes, slashes and rewards are public on chain anyway; any signed-in user may read them.
    @extend_schema(
        summary="Get a provider's stake, slashes and rewards",
        description="The provider wallet's stake as final staking events add up, with every "
        "slash and reward and the report hash each cites. Amounts are token units as decimal "
        "strings (uint256). Public on chain, so any signed-in user may read it.",
        responses={200: ProviderChainOutputSerializer},
    )
    def get(self, request, provider_id: int):
        data = selectors.provider_chain_state(provider_id=provider_id)
        return Response(ProviderChainOutputSerializer(data).data)


class ProviderStakingApi(APIView):
    @extend_schema(
        summary="Get a provider's stake, collateral requirement and staking instructions",
        description="For the provider's owner (and staff; 404 for anyone else). A machine is "
        "listed, shown in search and orderable only while the provider's free stake (`staked` "
        "minus what its open leases lock) covers `required`: for each listed machine (base + "
        "per accelerator × accelerators) × (1 + machines rejected for cheating recently). Each "
        "funded lease locks stake until the dispute window after it ends. `shortfall` says how "
        "much more to stake. To stake, the provider's wallet sends (1) `approve_calldata` to "
        "`token_address`, then, once mined, (2) `stake_calldata` to `staking_address`; the "
        "stake counts once the indexer sees it (a few blocks). To leave: "
        "`request_unstake_calldata`, then after `unlock_time` `withdraw_calldata`, both to "
        "`staking_address`. All amounts are token units (6 decimals: 1,000,000 units = 1 USD); "
        "times are UTC, `unlock_time` Unix seconds. Read from the indexed chain events and "
        "the recorded deployments, never from a node. 400 `payments_bad_amount` for a bad "
        "amount, 409 `payments_not_deployed` before the contracts are deployed.",
        parameters=[
            OpenApiParameter(
                "amount",
                OpenApiTypes.STR,
                description="Token units (6 decimals) the stake calldata stakes; default the "
                "shortfall.",
            ),
            OpenApiParameter(
                "unstake_amount",
                OpenApiTypes.STR,
                description="Token units (6 decimals) the unstake calldata requests; default "
                "all the free stake above the requirement.",
            ),
        ],
        responses={200: StakingOutputSerializer},
    )
    def get(self, request, provider_id: int):
        data = staking.provider_staking_state(
            user=request.user,
            provider_id=provider_id,
            amount=request.query_params.get("amount"),
            unstake_amount=request.query_params.get("unstake_amount"),
        )
        return Response(StakingOutputSerializer(data).data)


class CreditApi(APIView):
    # Credits are public on chain anyway; any signed-in user may read them.
    @extend_schema(
        summary="Get an account's escrow credit and the calldata to withdraw it",
        description="Settlement pays nobody directly: the escrow credits the provider's share "
        "and the renter's refund to per-account balances, and each account withdraws its own "
        "when it likes (one transaction for every lease credited meanwhile). `credit` is what "
        "the indexer recorded from final events (a few blocks behind the chain). The account "
        "sends `withdraw_calldata` to `escrow_address` from `address` itself: the escrow pays "
        "only the caller's own credit, to `to`. Amounts are token units (6 decimals: "
        "1,000,000 units = 1 USD). 400 `payments_bad_address` or `payments_bad_amount` for "
        "bad input, 400 `payments_amount_above_credit` when `amount` exceeds the credit, 409 "
        "`payments_not_deployed` before the contracts are deployed.",
        parameters=[
            OpenApiParameter(
                "amount",
                OpenApiTypes.STR,
                description="Token units to withdraw; default the whole credit.",
            ),
            OpenApiParameter(
                "to",
                OpenApiTypes.STR,
                description="Address to pay; default the account itself.",
            ),
        ],
        responses={200: CreditOutputSerializer},
    )
    def get(self, request, address: str):
        data = credits.credit_withdraw_instructions(
            address=address,
            amount=request.query_params.get("amount"),
            to=request.query_params.get("to"),
        )
        return Response(CreditOutputSerializer(data).data)

// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "./IERC20.sol";
import {ReentrancyGuard} from "./ReentrancyGuard.sol";

/// @title LeaseEscrow
/// @notice Holds each GPU lease's prepayment and splits it when the operator settles:
///         provider share, platform fee (to the treasury) and the renter's refund of unused time.
///
///         Funding rule: `amount` must be at least `ratePerSecond * maxDuration`, so the provider
///         is guaranteed payment for the whole promised duration. Billing is capped at
///         `maxDuration` seconds, so anything funded above the cap always comes back to the renter.
///
///         `settle` and `fail` accept a lease that was never started, so the operator can
///         refund a renter at once (0 seconds) when a provider never comes up, instead of
///         leaving the renter to wait out `reclaimDelay`.
///
///         The fee rate is snapshotted at funding, so the owner cannot raise the fee on a lease
///         that is already running.
///
///         Settlement pushes tokens straight to the payees (no pull-payment ledger), so the
///         database only ever has to follow ERC-20 Transfer events plus this contract's events.
///         `settleBatch` keeps this push model but aggregates transfers: one treasury transfer
///         per batch, and consecutive leases with the same provider (or renter) share one
///         transfer. Callers get the most out of it by sorting lease ids by provider. The
///         per-lease split is still in each lease's LeaseSettled event; only the Transfer events
///         are aggregated. The trade-off: a batch is all-or-nothing, so one bad lease id reverts
///         the whole batch, and a payee that cannot receive blocks the batch it is in.
///
///         Only plain ERC-20 tokens are supported (no fee-on-transfer or rebasing tokens).
///         The contract has no receive/fallback function and no payable function, so ether sent
///         to it is rejected.
contract LeaseEscrow is ReentrancyGuard {
    enum Status {
        None,
        Funded,
        Started,
        Settled,
        Failed,
        Reclaimed
    }

    /// @dev Packed into three slots; settle reads all three and rewrites only the first.
    struct Lease {
        address renter;
        uint40 fundedAt;
        Status status;
        address provider;
        uint64 maxDuration;
        uint16 feeBps;
        uint128 amount;
        uint128 ratePerSecond;
    }

    /// @dev Payouts queued by settleBatch; a payee repeated in consecutive leases is merged.
    struct Payouts {
        address[] payees;
        uint256[] amounts;
        uint256 count;
        address lastProvider;
        uint256 lastProviderSlot;
        address lastRenter;
        uint256 lastRenterSlot;
    }

    uint256 public constant BPS = 10_000;
    /// @notice Hard cap on the platform fee: 10 %.
    uint16 public constant MAX_FEE_BPS = 1_000;

    IERC20 public immutable token;
    /// @notice Seconds after funding after which a renter may take back a never-started lease.
    uint256 public immutable reclaimDelay;

    address public owner;
    address public operator;
    address public treasury;
    uint16 public feeBps;

    mapping(bytes32 => Lease) private _leases;

    event LeaseFunded(
        bytes32 indexed leaseId,
        address indexed renter,
        address indexed provider,
        uint256 amount,
        uint256 ratePerSecond,
        uint256 maxDuration
    );
    event LeaseStarted(bytes32 indexed leaseId);
    event LeaseSettled(
        bytes32 indexed leaseId,
        uint256 secondsUsed,
        uint256 providerAmount,
        uint256 feeAmount,
        uint256 refundAmount
    );
    event LeaseFailed(
        bytes32 indexed leaseId,
        uint256 secondsUsed,
        uint256 providerAmount,
        uint256 feeAmount,
        uint256 refundAmount,
        bytes32 reportHash
    );
    event LeaseReclaimed(bytes32 indexed leaseId, address indexed renter, uint256 amount);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event OperatorChanged(address indexed previousOperator, address indexed newOperator);
    event TreasuryChanged(address indexed previousTreasury, address indexed newTreasury);
    event FeeChanged(uint16 previousFeeBps, uint16 newFeeBps);

    error NotOwner(address caller);
    error NotOperator(address caller);
    error NotRenter(address caller);
    error ZeroAddress();
    error FeeAboveCap(uint256 feeBps, uint256 cap);
    error LeaseAlreadyExists(bytes32 leaseId);
    error InvalidLeaseTerms();
    error AmountBelowMaxCost(uint256 amount, uint256 maxCost);
    error ValueTooLarge();
    error LeaseNotFunded(bytes32 leaseId, Status status);
    error LeaseNotOpen(bytes32 leaseId, Status status);
    error ReclaimTooEarly(bytes32 leaseId, uint256 availableAt);
    error LengthMismatch(uint256 leaseIds, uint256 secondsUsed);
    error EmptyBatch();
    error TokenTransferFailed();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _;
    }

    constructor(
        IERC20 token_,
        address operator_,
        address treasury_,
        uint16 feeBps_,
        uint256 reclaimDelay_
    ) {
        if (address(token_) == address(0) || operator_ == address(0) || treasury_ == address(0)) {
            revert ZeroAddress();
        }
        if (feeBps_ > MAX_FEE_BPS) revert FeeAboveCap(feeBps_, MAX_FEE_BPS);
        token = token_;
        reclaimDelay = reclaimDelay_;
        owner = msg.sender;
        operator = operator_;
        treasury = treasury_;
        feeBps = feeBps_;
        emit OwnershipTransferred(address(0), msg.sender);
        emit OperatorChanged(address(0), operator_);
        emit TreasuryChanged(address(0), treasury_);
        emit FeeChanged(0, feeBps_);
    }

    // ----------------------------------------------------------------- administration

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function setOperator(address newOperator) external onlyOwner {
        if (newOperator == address(0)) revert ZeroAddress();
        emit OperatorChanged(operator, newOperator);
        operator = newOperator;
    }

    function setTreasury(address newTreasury) external onlyOwner {
        if (newTreasury == address(0)) revert ZeroAddress();
        emit TreasuryChanged(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice Applies to leases funded from now on; running leases keep their snapshot.
    function setFeeBps(uint16 newFeeBps) external onlyOwner {
        if (newFeeBps > MAX_FEE_BPS) revert FeeAboveCap(newFeeBps, MAX_FEE_BPS);
        emit FeeChanged(feeBps, newFeeBps);
        feeBps = newFeeBps;
    }

    // ----------------------------------------------------------------- lease lifecycle

    /// @notice Pulls `amount` from the caller (the renter), who must have approved this contract.
    function fund(
        bytes32 leaseId,
        address provider,
        uint256 amount,
        uint256 ratePerSecond,
        uint256 maxDuration
    ) external nonReentrant {
        if (_leases[leaseId].status != Status.None) revert LeaseAlreadyExists(leaseId);
        if (provider == address(0)) revert ZeroAddress();
        if (ratePerSecond == 0 || maxDuration == 0) revert InvalidLeaseTerms();
        if (amount > type(uint128).max || maxDuration > type(uint64).max) revert ValueTooLarge();
        // Both factors are below 2**128 and 2**64, so the product cannot overflow uint256.
        uint256 maxCost = ratePerSecond * maxDuration;
        if (amount < maxCost) revert AmountBelowMaxCost(amount, maxCost);

        _leases[leaseId] = Lease({
            renter: msg.sender,
            fundedAt: uint40(block.timestamp),
            status: Status.Funded,
            provider: provider,
            maxDuration: uint64(maxDuration),
            feeBps: feeBps,
            amount: uint128(amount),
            // rate <= maxCost <= amount < 2**128
            ratePerSecond: uint128(ratePerSecond)
        });
        emit LeaseFunded(leaseId, msg.sender, provider, amount, ratePerSecond, maxDuration);

        if (!token.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
    }

    /// @notice Marks the lease as running; from then on the renter can no longer reclaim it.
    function start(bytes32 leaseId) external onlyOperator {
        Lease storage lease = _leases[leaseId];
        if (lease.status != Status.Funded) revert LeaseNotFunded(leaseId, lease.status);
        lease.status = Status.Started;
        emit LeaseStarted(leaseId);
    }

    function settle(bytes32 leaseId, uint256 secondsUsed) external nonReentrant onlyOperator {
        _close(leaseId, secondsUsed, Status.Settled, bytes32(0));
    }

    /// @notice Closes a lease whose verification failed: the provider is paid for the seconds
    ///         that count, the unused part goes back to the renter, and the report hash ties
    ///         the decision to the verification report.
    function fail(bytes32 leaseId, uint256 secondsUsed, bytes32 reportHash)
        external
        nonReentrant
        onlyOperator
    {
        _close(leaseId, secondsUsed, Status.Failed, reportHash);
    }

    /// @notice Settles many leases in one transaction (see the contract notes on aggregation).
    function settleBatch(bytes32[] calldata leaseIds, uint256[] calldata secondsUsed)
        external
        nonReentrant
        onlyOperator
    {
        uint256 n = leaseIds.length;
        if (n != secondsUsed.length) revert LengthMismatch(n, secondsUsed.length);
        if (n == 0) revert EmptyBatch();

        // All state changes and events happen before the first transfer (checks-effects-
        // interactions across the whole batch); the payouts are queued in memory meanwhile.
        Payouts memory payouts = Payouts({
            payees: new address[](2 * n),
            amounts: new uint256[](2 * n),
            count: 0,
            lastProvider: address(0),
            lastProviderSlot: 0,
            lastRenter: address(0),
            lastRenterSlot: 0
        });
        uint256 totalFee;
        for (uint256 i; i < n; ++i) {
            totalFee += _settleInto(payouts, leaseIds[i], secondsUsed[i]);
        }

        for (uint256 i; i < payouts.count; ++i) {
            _pay(payouts.payees[i], payouts.amounts[i]);
        }
        _pay(treasury, totalFee);
    }

    /// @notice Lets the renter take back a lease the operator never started, once
    ///         `reclaimDelay` seconds have passed since funding.
    function reclaim(bytes32 leaseId) external nonReentrant {
        Lease storage lease = _leases[leaseId];
        if (lease.status != Status.Funded) revert LeaseNotFunded(leaseId, lease.status);
        if (msg.sender != lease.renter) revert NotRenter(msg.sender);
        uint256 availableAt = uint256(lease.fundedAt) + reclaimDelay;
        if (block.timestamp < availableAt) revert ReclaimTooEarly(leaseId, availableAt);
        lease.status = Status.Reclaimed;
        uint256 amount = lease.amount;
        emit LeaseReclaimed(leaseId, msg.sender, amount);
        _pay(msg.sender, amount);
    }

    // ----------------------------------------------------------------- views

    function getLease(bytes32 leaseId)
        external
        view
        returns (
            address renter,
            address provider,
            uint256 amount,
            uint256 ratePerSecond,
            uint256 maxDuration,
            uint256 fundedAt,
            uint256 leaseFeeBps,
            Status status
        )
    {
        Lease storage lease = _leases[leaseId];
        return (
            lease.renter,
            lease.provider,
            lease.amount,
            lease.ratePerSecond,
            lease.maxDuration,
            lease.fundedAt,
            lease.feeBps,
            lease.status
        );
    }

    /// @notice The split `settle` would make now, for off-chain previews.
    function quote(bytes32 leaseId, uint256 secondsUsed)
        external
        view
        returns (uint256 providerAmount, uint256 feeAmount, uint256 refundAmount)
    {
        Lease storage lease = _leases[leaseId];
        (, providerAmount, feeAmount, refundAmount) = _split(lease, secondsUsed);
    }

    // ----------------------------------------------------------------- internals

    function _close(bytes32 leaseId, uint256 secondsUsed, Status outcome, bytes32 reportHash)
        private
    {
        (address provider, address renter, uint256 toProvider, uint256 fee, uint256 refund) =
            _closeEffects(leaseId, secondsUsed, outcome, reportHash);
        _pay(provider, toProvider);
        _pay(treasury, fee);
        _pay(renter, refund);
    }

    function _settleInto(Payouts memory p, bytes32 leaseId, uint256 secondsUsed)
        private
        returns (uint256 fee)
    {
        (address provider, address renter, uint256 toProvider, uint256 fee_, uint256 refund) =
            _closeEffects(leaseId, secondsUsed, Status.Settled, bytes32(0));
        if (toProvider != 0) {
            if (provider == p.lastProvider) {
                p.amounts[p.lastProviderSlot] += toProvider;
            } else {
                p.payees[p.count] = provider;
                p.amounts[p.count] = toProvider;
                p.lastProvider = provider;
                p.lastProviderSlot = p.count++;
            }
        }
        if (refund != 0) {
            if (renter == p.lastRenter) {
                p.amounts[p.lastRenterSlot] += refund;
            } else {
                p.payees[p.count] = renter;
                p.amounts[p.count] = refund;
                p.lastRenter = renter;
                p.lastRenterSlot = p.count++;
            }
        }
        return fee_;
    }

    function _closeEffects(bytes32 leaseId, uint256 secondsUsed, Status outcome, bytes32 reportHash)
        private
        returns (address provider, address renter, uint256 toProvider, uint256 fee, uint256 refund)
    {
        Lease storage lease = _leases[leaseId];
        Status status = lease.status;
        if (status != Status.Funded && status != Status.Started) {
            revert LeaseNotOpen(leaseId, status);
        }
        uint256 billed;
        (billed, toProvider, fee, refund) = _split(lease, secondsUsed);
        lease.status = outcome;
        provider = lease.provider;
        renter = lease.renter;
        if (outcome == Status.Failed) {
            emit LeaseFailed(leaseId, billed, toProvider, fee, refund, reportHash);
        } else {
            emit LeaseSettled(leaseId, billed, toProvider, fee, refund);
        }
    }

    /// @dev Billed seconds are capped at maxDuration; cost is then at most rate * maxDuration,
    ///      which fund() guaranteed is covered by amount.
    function _split(Lease storage lease, uint256 secondsUsed)
        private
        view
        returns (uint256 billed, uint256 toProvider, uint256 fee, uint256 refund)
    {
        uint256 maxDuration = lease.maxDuration;
        billed = secondsUsed < maxDuration ? secondsUsed : maxDuration;
        uint256 amount = lease.amount;
        uint256 cost = billed * lease.ratePerSecond;
        fee = (cost * lease.feeBps) / BPS;
        toProvider = cost - fee;
        refund = amount - cost;
    }

    function _pay(address to, uint256 amount) private {
        if (amount == 0) return;
        if (!token.transfer(to, amount)) revert TokenTransferFailed();
    }
}

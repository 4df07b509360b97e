// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "./IERC20.sol";
import {Governed} from "./Governed.sol";

/// @title LeaseEscrow
/// @notice Holds each GPU lease's prepayment and splits it when a settler settles:
///         provider share, platform fee and the renter's refund of unused time.
///
///         Funding rule: `amount` must be at least `ratePerSecond * maxDuration`, so the provider
///         is guaranteed payment for the whole promised duration. Billing is capped at
///         `maxDuration` seconds, so anything funded above the cap always comes back to the renter.
///
///         `settle` and `fail` accept a lease that was never started, so the settler can
///         refund a renter at once (0 seconds) when a provider never comes up, instead of
///         leaving the renter to wait out `reclaimDelay`.
///
///         The fee rate is snapshotted at funding, so the admin cannot raise the fee on a lease
///         that is already running.
///
///         Pull payments: `settle`, `fail` and `settleBatch` move no token. They credit the
///         provider's share and the renter's refund to per-account balances held here
///         (`credits`), and add the fee to `accruedFees`; `withdraw` pays out the caller's own
///         credit (all or part, to itself or to an address it names) and `withdrawFees` pays the
///         accrued fees to the treasury (anyone may call it; the payee is fixed). Why: a token
///         transfer costs a settlement ~17,000 gas (cold token account, the escrow's and the
///         payee's balance, a Transfer event), three of them ~45,000; a credit is one warm
///         storage write of ~5,000. A payee that cannot receive (a blocklisted address, a
///         contract that reverts) no longer blocks a settlement or a batch: its credit waits
///         until it withdraws, to another address if it likes. The trade-off: payees must
///         withdraw, one transaction that amortises over all the leases credited meanwhile.
///         `reclaim` (a renter taking back a lease nobody started) still pays out directly.
///
///         Conservation: the escrow's token balance always equals the amounts of the open
///         (funded or started) leases + the sum of `credits` + `accruedFees`.
///
///         Roles (see Governed): SETTLER starts, settles and fails leases; ADMIN changes the
///         treasury, the fee and the roles through the timelock. What a stolen settler key can
///         do is bounded per lease: every credit of a lease goes to that lease's own provider or
///         renter or to the accrued fees (which only the treasury is ever paid), never to an
///         address the caller names, and the provider's share is at most
///         ratePerSecond * maxDuration of the lease's own escrow. A settler cannot withdraw
///         anyone's credit: `withdraw` only ever takes the caller's own.
///
///         Amounts are stored in 64 bits and rates in 40 (two storage slots per lease): ample for
///         a 6-decimal stablecoin (1.8e13 whole tokens per lease), too narrow for an 18-decimal
///         token, which `fund` then refuses with ValueTooLarge. Accrued fees are 72 bits, packed
///         beside the treasury and the lock: 4.7e15 whole tokens before `withdrawFees` must run.
///
///         Only plain ERC-20 tokens are supported (no fee-on-transfer or rebasing tokens).
///         The contract has no receive/fallback function and no payable function, so ether sent
///         to it is rejected.
contract LeaseEscrow is Governed {
    enum Status {
        None,
        Funded,
        Started,
        Settled,
        Failed,
        Reclaimed
    }

    /// @dev Two slots. Settle reads both and rewrites only the second (its status).
    struct Lease {
        address renter;
        uint64 amount;
        uint32 fundedAt;
        address provider;
        uint40 ratePerSecond;
        uint32 maxDuration;
        uint16 feeBps;
        Status status;
    }

    uint256 public constant BPS = 10_000;
    /// @notice Hard cap on the platform fee: 10 %.
    uint16 public constant MAX_FEE_BPS = 1_000;
    uint8 private constant UNLOCKED = 1;
    uint8 private constant LOCKED = 2;

    IERC20 public immutable token;
    /// @notice Seconds after funding after which a renter may take back a never-started lease.
    uint256 public immutable reclaimDelay;

    // One slot: fund reads the fee, settle adds to the accrued fees, and both take the
    // reentrancy lock, so a settlement's fee costs no storage read or write of its own.
    address public treasury;
    uint16 public feeBps;
    uint8 private _lock;
    /// @notice Platform fees of settled leases not yet paid to the treasury (see withdrawFees).
    uint72 public accruedFees;

    mapping(bytes32 => Lease) private _leases;
    /// @notice Token units each account may withdraw: provider shares and renter refunds.
    mapping(address => uint256) public credits;

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
    /// @dev Not "Withdrawn": ProviderStaking has an event of that name, and one name per
    ///      meaning keeps the indexer's event names unambiguous.
    event CreditWithdrawn(address indexed account, address indexed to, uint256 amount);
    event FeesWithdrawn(address indexed treasury, uint256 amount);
    event TreasuryChanged(address indexed previousTreasury, address indexed newTreasury);
    event FeeChanged(uint16 previousFeeBps, uint16 newFeeBps);

    error ReentrantCall();
    error NotRenter(address caller);
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
    error NothingToWithdraw();
    error InsufficientCredit(uint256 credit, uint256 amount);
    error FeesOverflow();

    modifier nonReentrant() {
        if (_lock != UNLOCKED) revert ReentrantCall();
        _lock = LOCKED;
        _;
        _lock = UNLOCKED;
    }

    /// @param settler gets SETTLER; the deployer gets ADMIN.
    /// @param timelockDelay seconds between proposing and executing a role or parameter change.
    constructor(
        IERC20 token_,
        address settler,
        address treasury_,
        uint16 feeBps_,
        uint256 reclaimDelay_,
        uint256 timelockDelay
    ) Governed(msg.sender, timelockDelay) {
        if (address(token_) == address(0) || treasury_ == address(0)) revert ZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert FeeAboveCap(feeBps_, MAX_FEE_BPS);
        token = token_;
        reclaimDelay = reclaimDelay_;
        _grant(settler, SETTLER);
        treasury = treasury_;
        feeBps = feeBps_;
        _lock = UNLOCKED;
        emit TreasuryChanged(address(0), treasury_);
        emit FeeChanged(0, feeBps_);
    }

    // ----------------------------------------------------------------- parameters (timelocked)

    function setTreasury(address newTreasury) external onlySelf {
        if (newTreasury == address(0)) revert ZeroAddress();
        emit TreasuryChanged(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice Applies to leases funded from now on; running leases keep their snapshot.
    function setFeeBps(uint16 newFeeBps) external onlySelf {
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
        if (
            amount > type(uint64).max || ratePerSecond > type(uint40).max
                || maxDuration > type(uint32).max
        ) revert ValueTooLarge();
        // Both factors are below 2**40 and 2**32, so the product cannot overflow.
        uint256 maxCost = ratePerSecond * maxDuration;
        if (amount < maxCost) revert AmountBelowMaxCost(amount, maxCost);

        _leases[leaseId] = Lease({
            renter: msg.sender,
            amount: uint64(amount),
            // uint32 seconds last until 2106.
            fundedAt: uint32(block.timestamp),
            provider: provider,
            ratePerSecond: uint40(ratePerSecond),
            maxDuration: uint32(maxDuration),
            feeBps: feeBps,
            status: Status.Funded
        });
        emit LeaseFunded(leaseId, msg.sender, provider, amount, ratePerSecond, maxDuration);

        if (!token.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
    }

    /// @notice Marks the lease as running; from then on the renter can no longer reclaim it.
    function start(bytes32 leaseId) external onlyRole(SETTLER) {
        Lease storage lease = _leases[leaseId];
        if (lease.status != Status.Funded) revert LeaseNotFunded(leaseId, lease.status);
        lease.status = Status.Started;
        emit LeaseStarted(leaseId);
    }

    /// @notice Closes a lease for `secondsUsed` (capped at maxDuration): credits the provider's
    ///         share and the renter's refund, accrues the fee. Moves no token: see withdraw.
    function settle(bytes32 leaseId, uint256 secondsUsed) external nonReentrant onlyRole(SETTLER) {
        _close(leaseId, secondsUsed, Status.Settled, bytes32(0));
    }

    /// @notice Closes a lease whose verification failed: the provider is credited for the
    ///         seconds that count, the unused part is credited back to the renter, and the report
    ///         hash ties the decision to the verification report.
    function fail(bytes32 leaseId, uint256 secondsUsed, bytes32 reportHash)
        external
        nonReentrant
        onlyRole(SETTLER)
    {
        _close(leaseId, secondsUsed, Status.Failed, reportHash);
    }

    /// @notice Settles many leases in one transaction. All or nothing: one lease that is not
    ///         open reverts the batch. No payee can block it, since nothing is paid out here.
    function settleBatch(bytes32[] calldata leaseIds, uint256[] calldata secondsUsed)
        external
        nonReentrant
        onlyRole(SETTLER)
    {
        uint256 n = leaseIds.length;
        if (n != secondsUsed.length) revert LengthMismatch(n, secondsUsed.length);
        if (n == 0) revert EmptyBatch();
        uint256 totalFee;
        for (uint256 i; i < n; ++i) {
            (address provider, address renter, uint256 toProvider, uint256 fee, uint256 refund) =
                _closeEffects(leaseIds[i], secondsUsed[i], Status.Settled, bytes32(0));
            // Repeated payees (one provider's leases) hit a warm slot: ~200 gas, not ~5,000.
            _credit(provider, toProvider);
            _credit(renter, refund);
            totalFee += fee;
        }
        _accrue(totalFee);
    }

    /// @notice Lets the renter take back a lease no settler started, once `reclaimDelay`
    ///         seconds have passed since funding.
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

    // ----------------------------------------------------------------- withdrawals

    /// @notice Pays `amount` of the caller's own credit to `to` (the caller itself, or another
    ///         address, e.g. when the caller's address cannot receive the token).
    function withdraw(address to, uint256 amount) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        if (amount == 0) revert NothingToWithdraw();
        uint256 credit = credits[msg.sender];
        if (amount > credit) revert InsufficientCredit(credit, amount);
        // Effects before the transfer: a token that calls back finds the credit already taken
        // (and the lock held).
        unchecked {
            credits[msg.sender] = credit - amount;
        }
        emit CreditWithdrawn(msg.sender, to, amount);
        _pay(to, amount);
    }

    /// @notice Pays all accrued fees to the treasury. Anyone may call it: the payee is fixed.
    function withdrawFees() external nonReentrant {
        uint256 amount = accruedFees;
        if (amount == 0) revert NothingToWithdraw();
        accruedFees = 0;
        address payee = treasury;
        emit FeesWithdrawn(payee, amount);
        _pay(payee, amount);
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

    /// @notice The split `settle` would credit now, for off-chain previews.
    function quote(bytes32 leaseId, uint256 secondsUsed)
        external
        view
        returns (uint256 providerAmount, uint256 feeAmount, uint256 refundAmount)
    {
        Lease memory lease = _leases[leaseId];
        (, providerAmount, feeAmount, refundAmount) = _split(lease, secondsUsed);
    }

    // ----------------------------------------------------------------- internals

    function _close(bytes32 leaseId, uint256 secondsUsed, Status outcome, bytes32 reportHash)
        private
    {
        (address provider, address renter, uint256 toProvider, uint256 fee, uint256 refund) =
            _closeEffects(leaseId, secondsUsed, outcome, reportHash);
        _credit(provider, toProvider);
        _credit(renter, refund);
        _accrue(fee);
    }

    function _credit(address account, uint256 amount) private {
        if (amount != 0) credits[account] += amount;
    }

    /// @dev accruedFees shares the slot the lock has just written: a warm ~200 gas.
    function _accrue(uint256 fee) private {
        if (fee == 0) return;
        uint256 total = accruedFees + fee;
        // 72 bits hold 4.7e15 whole tokens of a 6-decimal token; withdrawFees (anyone may call
        // it) empties it, so a full counter never blocks settlement for long.
        if (total > type(uint72).max) revert FeesOverflow();
        accruedFees = uint72(total);
    }

    function _closeEffects(bytes32 leaseId, uint256 secondsUsed, Status outcome, bytes32 reportHash)
        private
        returns (address provider, address renter, uint256 toProvider, uint256 fee, uint256 refund)
    {
        Lease storage stored = _leases[leaseId];
        Lease memory lease = stored;
        if (lease.status != Status.Funded && lease.status != Status.Started) {
            revert LeaseNotOpen(leaseId, lease.status);
        }
        uint256 billed;
        (billed, toProvider, fee, refund) = _split(lease, secondsUsed);
        stored.status = outcome;
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
    function _split(Lease memory lease, uint256 secondsUsed)
        private
        pure
        returns (uint256 billed, uint256 toProvider, uint256 fee, uint256 refund)
    {
        uint256 maxDuration = lease.maxDuration;
        billed = secondsUsed < maxDuration ? secondsUsed : maxDuration;
        uint256 cost = billed * lease.ratePerSecond;
        fee = (cost * lease.feeBps) / BPS;
        toProvider = cost - fee;
        refund = uint256(lease.amount) - cost;
    }

    function _pay(address to, uint256 amount) private {
        if (amount == 0) return;
        if (!token.transfer(to, amount)) revert TokenTransferFailed();
    }
}

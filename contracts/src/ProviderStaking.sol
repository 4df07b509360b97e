// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "./IERC20.sol";
import {Governed} from "./Governed.sol";

/// @dev Solidity keeps events and errors in one namespace per contract, so the error that shares
///      its name with the StakeLocked event lives here; it is in ProviderStaking's ABI all the same.
interface IStakeLockErrors {
    /// @notice requestUnstake would take the stake below the amount locked until `until`.
    error StakeLocked(uint256 locked, uint256 until);
}

/// @title ProviderStaking
/// @notice Providers lock a stake that a slasher can take when a verification report shows
///         cheating, and earn rewards paid from a pool that anyone can top up.
///
///         Unstaking is two-step: requested funds move to `pending` and unlock after
///         `unstakeDelay`. Pending funds stay slashable, so a provider who sees a bad report
///         coming cannot withdraw ahead of the slash. A new request restarts the delay for
///         everything pending, which errs on the side of keeping funds slashable.
///
///         Slashes take from the active stake first, then from pending, and go straight to the
///         treasury: a separate slash pool would only add another balance to reconcile.
///         Rewards are paid out to the provider's wallet, not added to the stake.
///
///         Roles (see Governed): SLASHER slashes, REWARDER rewards, SETTLER sets the lease locks
///         (`lock`), ADMIN changes the treasury, the limits and the roles through the timelock.
///         The contract caps what the hot keys can do: the total slashed and the total rewarded
///         in each period of `periodSeconds` (periods are block.timestamp / periodSeconds), and
///         how far ahead a lock may run (`maxLockSeconds`).
///
///         Invariant: token.balanceOf(this) == totalStaked + totalPending + rewardPool.
contract ProviderStaking is Governed {
    struct Stake {
        uint128 staked;
        uint128 pending;
        uint64 unlockTime;
        // Collateral held for the provider's leases: `requestUnstake` may not take `staked`
        // below `locked` before `lockedUntil`. Shares the unlockTime slot.
        uint64 lockedUntil;
        uint128 locked;
    }

    /// @dev One slot, read by every slash and reward.
    struct Limits {
        uint32 periodSeconds;
        uint32 maxLockSeconds;
        uint96 slashCap;
        uint96 rewardCap;
    }

    /// @dev One slot: what was slashed and rewarded in period `period`.
    struct Usage {
        uint64 period;
        uint96 slashed;
        uint96 rewarded;
    }

    uint8 private constant UNLOCKED = 1;
    uint8 private constant LOCKED = 2;

    IERC20 public immutable token;
    uint256 public immutable unstakeDelay;

    // One slot: slash reads the treasury anyway, so the reentrancy lock beside it is free there.
    address public treasury;
    uint8 private _lock;

    Limits private _limits;
    Usage private _usage;

    uint256 public rewardPool;
    uint256 public totalStaked;
    uint256 public totalPending;

    mapping(address => Stake) private _stakes;

    event Staked(address indexed provider, uint256 amount, uint256 newStake);
    event UnstakeRequested(address indexed provider, uint256 amount, uint256 unlockTime);
    event Withdrawn(address indexed provider, uint256 amount);
    event Slashed(address indexed provider, uint256 amount, bytes32 reportHash);
    event Rewarded(address indexed provider, uint256 amount, bytes32 reportHash);
    event RewardsFunded(address indexed funder, uint256 amount);
    event StakeLocked(address indexed provider, uint256 amount, uint256 until);
    event TreasuryChanged(address indexed previousTreasury, address indexed newTreasury);
    event LimitsChanged(
        uint256 periodSeconds, uint256 slashCap, uint256 rewardCap, uint256 maxLockSeconds
    );

    error ReentrantCall();
    error ZeroAmount();
    error ValueTooLarge();
    error InvalidLimits();
    error InsufficientStake(uint256 staked, uint256 requested);
    error NothingPending();
    error StillLocked(uint256 unlockTime);
    error SlashExceedsStake(uint256 slashable, uint256 requested);
    error RewardExceedsPool(uint256 pool, uint256 requested);
    error SlashCapExceeded(uint256 slashedInPeriod, uint256 requested, uint256 cap);
    error RewardCapExceeded(uint256 rewardedInPeriod, uint256 requested, uint256 cap);
    error LockTooLong(uint256 until, uint256 latest);
    error TokenTransferFailed();

    modifier nonReentrant() {
        if (_lock != UNLOCKED) revert ReentrantCall();
        _lock = LOCKED;
        _;
        _lock = UNLOCKED;
    }

    /// @param operator gets SETTLER, SLASHER and REWARDER; the deployer gets ADMIN.
    /// @param limits_ the per-period caps and the longest lock (see setLimits).
    constructor(
        IERC20 token_,
        address operator,
        address treasury_,
        uint256 unstakeDelay_,
        uint256 timelockDelay,
        Limits memory limits_
    ) Governed(msg.sender, timelockDelay) {
        if (address(token_) == address(0) || treasury_ == address(0)) revert ZeroAddress();
        // unlockTime is stored as uint64; a delay this large would be a deployment mistake.
        if (unstakeDelay_ > type(uint32).max) revert ValueTooLarge();
        token = token_;
        unstakeDelay = unstakeDelay_;
        _grant(operator, SETTLER | SLASHER | REWARDER);
        treasury = treasury_;
        _lock = UNLOCKED;
        emit TreasuryChanged(address(0), treasury_);
        _setLimits(limits_);
        // A usage slot that is never zero again makes the first capped call of each period a
        // 2,900-gas rewrite instead of a 20,000-gas fresh write.
        _usage.period = uint64(block.timestamp / limits_.periodSeconds);
    }

    // ----------------------------------------------------------------- parameters (timelocked)

    function setTreasury(address newTreasury) external onlySelf {
        if (newTreasury == address(0)) revert ZeroAddress();
        emit TreasuryChanged(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice Caps take effect at once, counting what the current period already used.
    function setLimits(Limits calldata newLimits) external onlySelf {
        _setLimits(newLimits);
    }

    // ----------------------------------------------------------------- providers

    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Stake storage s = _stakes[msg.sender];
        uint256 newStake = uint256(s.staked) + amount;
        // Bounding staked + pending keeps the later move from staked to pending in range.
        if (newStake + s.pending > type(uint128).max) revert ValueTooLarge();
        s.staked = uint128(newStake);
        totalStaked += amount;
        emit Staked(msg.sender, amount, newStake);
        if (!token.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
    }

    function requestUnstake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Stake storage s = _stakes[msg.sender];
        if (amount > s.staked) revert InsufficientStake(s.staked, amount);
        if (block.timestamp < s.lockedUntil && s.staked - amount < s.locked) {
            revert IStakeLockErrors.StakeLocked(s.locked, s.lockedUntil);
        }
        uint256 unlockTime = block.timestamp + unstakeDelay;
        s.staked -= uint128(amount);
        s.pending += uint128(amount);
        totalStaked -= amount;
        totalPending += amount;
        s.unlockTime = uint64(unlockTime);
        emit UnstakeRequested(msg.sender, amount, unlockTime);
    }

    function withdraw() external nonReentrant {
        Stake storage s = _stakes[msg.sender];
        uint256 amount = s.pending;
        if (amount == 0) revert NothingPending();
        if (block.timestamp < s.unlockTime) revert StillLocked(s.unlockTime);
        s.pending = 0;
        s.unlockTime = 0;
        totalPending -= amount;
        emit Withdrawn(msg.sender, amount);
        _pay(msg.sender, amount);
    }

    // ----------------------------------------------------------------- lease collateral

    /// @notice Sets (replaces) the stake the provider must keep while its leases run: until
    ///         `until`, requestUnstake may not take `staked` below `amount`. Slashes are not
    ///         limited by the lock. An amount of 0 or an `until` in the past releases it.
    ///         `until` may be at most `maxLockSeconds` ahead, so a stolen settler key can freeze
    ///         a stake only that long (and an honest settler can release it at once).
    function lock(address provider, uint256 amount, uint256 until) external onlyRole(SETTLER) {
        if (provider == address(0)) revert ZeroAddress();
        if (amount > type(uint128).max) revert ValueTooLarge();
        uint256 latest = block.timestamp + _limits.maxLockSeconds;
        if (until > latest) revert LockTooLong(until, latest);
        Stake storage s = _stakes[provider];
        s.locked = uint128(amount);
        s.lockedUntil = uint64(until);
        emit StakeLocked(provider, amount, until);
    }

    // ----------------------------------------------------------------- rewards and slashing

    function fundRewards(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        rewardPool += amount;
        emit RewardsFunded(msg.sender, amount);
        if (!token.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
    }

    function slash(address provider, uint256 amount, bytes32 reportHash)
        external
        nonReentrant
        onlyRole(SLASHER)
    {
        if (amount == 0) revert ZeroAmount();
        Stake storage s = _stakes[provider];
        uint256 staked = s.staked;
        uint256 pending = s.pending;
        if (amount > staked + pending) revert SlashExceedsStake(staked + pending, amount);

        Limits memory caps = _limits;
        Usage memory usage = _currentUsage(caps);
        uint256 slashed = usage.slashed + amount;
        if (slashed > caps.slashCap) {
            revert SlashCapExceeded(usage.slashed, amount, caps.slashCap);
        }
        usage.slashed = uint96(slashed);
        _usage = usage;

        uint256 fromStake = amount < staked ? amount : staked;
        uint256 fromPending = amount - fromStake;
        s.staked = uint128(staked - fromStake);
        s.pending = uint128(pending - fromPending);
        totalStaked -= fromStake;
        totalPending -= fromPending;
        emit Slashed(provider, amount, reportHash);
        _pay(treasury, amount);
    }

    function reward(address provider, uint256 amount, bytes32 reportHash)
        external
        nonReentrant
        onlyRole(REWARDER)
    {
        if (provider == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        uint256 pool = rewardPool;
        if (amount > pool) revert RewardExceedsPool(pool, amount);

        Limits memory caps = _limits;
        Usage memory usage = _currentUsage(caps);
        uint256 rewarded = usage.rewarded + amount;
        if (rewarded > caps.rewardCap) {
            revert RewardCapExceeded(usage.rewarded, amount, caps.rewardCap);
        }
        usage.rewarded = uint96(rewarded);
        _usage = usage;

        rewardPool = pool - amount;
        emit Rewarded(provider, amount, reportHash);
        _pay(provider, amount);
    }

    // ----------------------------------------------------------------- views

    function stakeOf(address provider)
        external
        view
        returns (uint256 staked, uint256 pending, uint256 unlockTime)
    {
        Stake storage s = _stakes[provider];
        return (s.staked, s.pending, s.unlockTime);
    }

    /// @notice The provider's lease lock: the stake it must keep, and until when.
    function lockOf(address provider) external view returns (uint256 amount, uint256 until) {
        Stake storage s = _stakes[provider];
        return (s.locked, s.lockedUntil);
    }

    function limits() external view returns (Limits memory) {
        return _limits;
    }

    /// @notice The current period's start, and what was slashed and rewarded in it so far.
    function periodUsage()
        external
        view
        returns (uint256 periodStart, uint256 slashed, uint256 rewarded)
    {
        Limits memory limits_ = _limits;
        Usage memory usage = _currentUsage(limits_);
        return (uint256(usage.period) * limits_.periodSeconds, usage.slashed, usage.rewarded);
    }

    // ----------------------------------------------------------------- internals

    function _currentUsage(Limits memory limits_) private view returns (Usage memory usage) {
        uint256 period = block.timestamp / limits_.periodSeconds;
        usage = _usage;
        if (usage.period != period) {
            usage = Usage({period: uint64(period), slashed: 0, rewarded: 0});
        }
    }

    function _setLimits(Limits memory newLimits) private {
        if (newLimits.periodSeconds == 0) revert InvalidLimits();
        _limits = newLimits;
        emit LimitsChanged(
            newLimits.periodSeconds,
            newLimits.slashCap,
            newLimits.rewardCap,
            newLimits.maxLockSeconds
        );
    }

    function _pay(address to, uint256 amount) private {
        if (!token.transfer(to, amount)) revert TokenTransferFailed();
    }
}

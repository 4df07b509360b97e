// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "./IERC20.sol";
import {ReentrancyGuard} from "./ReentrancyGuard.sol";

/// @dev Solidity keeps events and errors in one namespace per contract, so the error that shares
///      its name with the StakeLocked event lives here; it is in ProviderStaking's ABI all the same.
interface IStakeLockErrors {
    /// @notice requestUnstake would take the stake below the amount locked until `until`.
    error StakeLocked(uint256 locked, uint256 until);
}

/// @title ProviderStaking
/// @notice Providers lock a stake that the operator can slash when a verification report shows
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
///         Invariant: token.balanceOf(this) == totalStaked + totalPending + rewardPool.
contract ProviderStaking is ReentrancyGuard {
    struct Stake {
        uint128 staked;
        uint128 pending;
        uint64 unlockTime;
        // Collateral held for the provider's leases: `requestUnstake` may not take `staked`
        // below `locked` before `lockedUntil`. Shares the unlockTime slot.
        uint64 lockedUntil;
        uint128 locked;
    }

    IERC20 public immutable token;
    uint256 public immutable unstakeDelay;

    address public owner;
    address public operator;
    address public treasury;

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
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event OperatorChanged(address indexed previousOperator, address indexed newOperator);
    event TreasuryChanged(address indexed previousTreasury, address indexed newTreasury);

    error NotOwner(address caller);
    error NotOperator(address caller);
    error ZeroAddress();
    error ZeroAmount();
    error ValueTooLarge();
    error InsufficientStake(uint256 staked, uint256 requested);
    error NothingPending();
    error StillLocked(uint256 unlockTime);
    error SlashExceedsStake(uint256 slashable, uint256 requested);
    error RewardExceedsPool(uint256 pool, uint256 requested);
    error TokenTransferFailed();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _;
    }

    constructor(IERC20 token_, address operator_, address treasury_, uint256 unstakeDelay_) {
        if (address(token_) == address(0) || operator_ == address(0) || treasury_ == address(0)) {
            revert ZeroAddress();
        }
        // unlockTime is stored as uint64; a delay this large would be a deployment mistake.
        if (unstakeDelay_ > type(uint32).max) revert ValueTooLarge();
        token = token_;
        unstakeDelay = unstakeDelay_;
        owner = msg.sender;
        operator = operator_;
        treasury = treasury_;
        emit OwnershipTransferred(address(0), msg.sender);
        emit OperatorChanged(address(0), operator_);
        emit TreasuryChanged(address(0), treasury_);
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
    function lock(address provider, uint256 amount, uint256 until) external onlyOperator {
        if (provider == address(0)) revert ZeroAddress();
        if (amount > type(uint128).max || until > type(uint64).max) revert ValueTooLarge();
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
        onlyOperator
    {
        if (amount == 0) revert ZeroAmount();
        Stake storage s = _stakes[provider];
        uint256 staked = s.staked;
        uint256 pending = s.pending;
        if (amount > staked + pending) revert SlashExceedsStake(staked + pending, amount);
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
        onlyOperator
    {
        if (provider == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        uint256 pool = rewardPool;
        if (amount > pool) revert RewardExceedsPool(pool, amount);
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

    function _pay(address to, uint256 amount) private {
        if (!token.transfer(to, amount)) revert TokenTransferFailed();
    }
}

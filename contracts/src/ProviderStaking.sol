// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "./IERC20.sol";
import {ReentrancyGuard} from "./ReentrancyGuard.sol";

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

    function _pay(address to, uint256 amount) private {
        if (!token.transfer(to, amount)) revert TokenTransferFailed();
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice Storage-slot reentrancy lock. Transient storage (EIP-1153) would be cheaper, but the
///         build targets Shanghai so that one bytecode runs on Ganache 7 as well as Anvil.
abstract contract ReentrancyGuard {
    // 1/2 rather than 0/1: a slot that never returns to zero keeps every lock at the
    // warm-reset price instead of paying for a fresh non-zero write each call.
    uint256 private _lock = 1;

    error ReentrantCall();

    modifier nonReentrant() {
        if (_lock != 1) revert ReentrantCall();
        _lock = 2;
        _;
        _lock = 1;
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice TEST ONLY. A contract account (renter or provider) that, when it receives tokens
///         through ReentrantToken's hook, calls back into `target` with `attackData`. Reverts
///         from the re-entry bubble up so tests can see which guard stopped it.
contract MaliciousReceiver {
    address public target;
    bytes public attackData;
    uint256 public hooksSeen;

    function setAttack(address target_, bytes calldata data) external {
        target = target_;
        attackData = data;
    }

    /// @notice Lets the test drive this account: approve, fund, stake, reclaim, withdraw, ...
    function execute(address to, bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    function onTokenReceived(address, uint256) external {
        hooksSeen += 1;
        if (target == address(0)) return;
        (bool ok, bytes memory ret) = target.call(attackData);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}

// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice TEST ONLY. An ERC-20 that hands control to an attacker during transfers, to prove
///         that the escrow and staking reentrancy guards hold:
///         - when armed, the token itself calls `attackTarget` with `attackData` (once), as a
///           malicious or upgraded token could;
///         - recipients registered with `setHookReceiver` get an ERC-777-style
///           `onTokenReceived` callback, which a malicious receiver can use to re-enter.
///         Any revert from the attack bubbles up unchanged, so tests can see which guard fired.
contract ReentrantToken {
    string public constant name = "Reentrant Token";
    string public constant symbol = "EVIL";
    uint8 public constant decimals = 6;

    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(address => bool) public hookReceivers;

    address public attackTarget;
    bytes public attackData;
    bool public armed;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function arm(address target, bytes calldata data) external {
        attackTarget = target;
        attackData = data;
        armed = true;
    }

    function setHookReceiver(address receiver, bool enabled) external {
        hookReceivers[receiver] = enabled;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        allowance[from][msg.sender] -= amount;
        _transfer(from, to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
        if (armed) {
            armed = false;
            _callOrBubble(attackTarget, attackData);
        }
        if (hookReceivers[to]) {
            _callOrBubble(to, abi.encodeWithSignature("onTokenReceived(address,uint256)", from, amount));
        }
    }

    function _callOrBubble(address target, bytes memory data) private {
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}

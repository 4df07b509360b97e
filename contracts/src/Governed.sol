// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Governed
/// @notice Roles and a timelock shared by the marketplace contracts, so that no single key can
///         drain them:
///
///         - ADMIN changes roles and parameters, and only through the timelock: `propose` a call
///           to one of this contract's `onlySelf` setters, wait `delay` seconds, `execute` it (or
///           `cancel` it meanwhile). Every step is an event that carries the call, so watchers
///           see a change `delay` seconds before it takes effect.
///         - SETTLER, SLASHER and REWARDER are the hot operational keys; each contract says
///           what each may do and caps it.
///
///         Taking a role away cannot move money, so an admin revokes an operational role at once
///           (`revokeRoles`): a stolen hot key is cut off in one transaction. Granting, and
///           removing an admin, wait for the timelock. An account may hold several roles; roles
///           are a bit mask per account, so checking one costs one storage read.
abstract contract Governed {
    uint256 public constant ADMIN = 1;
    uint256 public constant SETTLER = 2;
    uint256 public constant SLASHER = 4;
    uint256 public constant REWARDER = 8;
    uint256 private constant ALL_ROLES = ADMIN | SETTLER | SLASHER | REWARDER;
    /// @notice Longest timelock delay: a longer one could leave a mistake unfixable for good.
    uint256 public constant MAX_DELAY = 30 days;

    /// @notice Role bits held by each account.
    mapping(address => uint256) public rolesOf;
    /// @notice Seconds between proposing a change and executing it.
    uint256 public delay;
    /// @notice When each proposed change (id = keccak256 of its call data) may be executed;
    ///         0 when no such change is pending.
    mapping(bytes32 => uint256) public readyAt;

    event RolesGranted(address indexed account, uint256 roles);
    event RolesRevoked(address indexed account, uint256 roles);
    event DelayChanged(uint256 previousDelay, uint256 newDelay);
    event ChangeProposed(bytes32 indexed id, bytes data, uint256 readyAt);
    event ChangeExecuted(bytes32 indexed id);
    event ChangeCancelled(bytes32 indexed id);

    error MissingRole(address caller, uint256 role);
    error OnlyThroughTimelock(address caller);
    error UnknownRoles(uint256 roles);
    error DelayTooLong(uint256 delay, uint256 max);
    error ChangeAlreadyProposed(bytes32 id);
    error UnknownChange(bytes32 id);
    error ChangeNotReady(bytes32 id, uint256 readyAt);
    error ZeroAddress();

    modifier onlyRole(uint256 role) {
        if (rolesOf[msg.sender] & role == 0) revert MissingRole(msg.sender, role);
        _;
    }

    /// @dev Setters behind the timelock: reachable only through `execute`.
    modifier onlySelf() {
        if (msg.sender != address(this)) revert OnlyThroughTimelock(msg.sender);
        _;
    }

    constructor(address admin, uint256 delay_) {
        _setDelay(delay_);
        _grant(admin, ADMIN);
    }

    // ----------------------------------------------------------------- timelock

    /// @notice Schedules `data`, a call to one of this contract's timelocked setters.
    function propose(bytes calldata data) external onlyRole(ADMIN) returns (bytes32 id) {
        id = keccak256(data);
        if (readyAt[id] != 0) revert ChangeAlreadyProposed(id);
        uint256 when = block.timestamp + delay;
        readyAt[id] = when;
        emit ChangeProposed(id, data, when);
    }

    /// @notice Runs a proposed change once its delay has passed; its revert is passed on.
    function execute(bytes calldata data) external onlyRole(ADMIN) {
        bytes32 id = keccak256(data);
        uint256 when = readyAt[id];
        if (when == 0) revert UnknownChange(id);
        if (block.timestamp < when) revert ChangeNotReady(id, when);
        delete readyAt[id];
        emit ChangeExecuted(id);
        (bool ok, bytes memory result) = address(this).call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 32), mload(result))
            }
        }
    }

    function cancel(bytes32 id) external onlyRole(ADMIN) {
        if (readyAt[id] == 0) revert UnknownChange(id);
        delete readyAt[id];
        emit ChangeCancelled(id);
    }

    // ----------------------------------------------------------------- roles and delay

    function grantRoles(address account, uint256 roles) external onlySelf {
        _grant(account, roles);
    }

    /// @notice An admin revokes operational roles at once; revoking ADMIN waits for the timelock.
    function revokeRoles(address account, uint256 roles) external {
        if (msg.sender != address(this)) {
            if (rolesOf[msg.sender] & ADMIN == 0) revert MissingRole(msg.sender, ADMIN);
            if (roles & ADMIN != 0) revert OnlyThroughTimelock(msg.sender);
        }
        if (roles == 0 || roles & ~ALL_ROLES != 0) revert UnknownRoles(roles);
        uint256 held = rolesOf[account];
        rolesOf[account] = held & ~roles;
        emit RolesRevoked(account, held & roles);
    }

    function setDelay(uint256 newDelay) external onlySelf {
        _setDelay(newDelay);
    }

    function hasRole(address account, uint256 role) external view returns (bool) {
        return rolesOf[account] & role == role;
    }

    function _grant(address account, uint256 roles) internal {
        if (account == address(0)) revert ZeroAddress();
        if (roles == 0 || roles & ~ALL_ROLES != 0) revert UnknownRoles(roles);
        rolesOf[account] |= roles;
        emit RolesGranted(account, roles);
    }

    function _setDelay(uint256 newDelay) private {
        if (newDelay > MAX_DELAY) revert DelayTooLong(newDelay, MAX_DELAY);
        emit DelayChanged(delay, newDelay);
        delay = newDelay;
    }
}

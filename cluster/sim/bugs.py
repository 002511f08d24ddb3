"""The planted bugs the simulator's checkers must catch (`spanlite sim --inject-bug NAME`),
each switched on in the layer it breaks; tests/sim/test_sim.py shows each is caught."""

KNOWN_BUGS = (
    "ack-before-fsync",  # ranges.store: acknowledge what a crash may still lose
    "accept-lower-ballot",  # paxos_groups.core: an acceptor accepts below its promise
    "lease-without-stasis",  # ranges.replica: serve through the lease's stasis period
    "skip-reproposal",  # paxos_groups.core: a new leader does not re-propose accepted values
    "split-drops-rhs-write",  # ranges.state_machine: a split loses a right-hand write
    "epoch-increment-early",  # ranges.state_machine/replica: end a live node's epoch
    "skip-commit-wait",  # ranges.replica_txn: acknowledge a commit before commit-wait
    "release-locks-before-commit-record",  # ranges.replica_txn: prepared locks stop no one
    "read-ignores-prepared",  # ranges.replica_txn: snapshot reads skip prepared writes
)

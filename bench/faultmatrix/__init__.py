"""The fault matrix (issue 18): every output against its real peer under each fault, and the host
faults, counted from what the peer stored. Entry point: bench/fault_matrix.py."""

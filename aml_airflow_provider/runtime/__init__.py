"""What runs next to a step: the v1 environment contract, data staging, the child process."""

"""bulletproof's harness: real services, fault injection, history, checker and report."""

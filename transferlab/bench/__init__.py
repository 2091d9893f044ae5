"""Benchmarks behind the book's figures; ``transferlab bench NAME`` runs them from the shell."""

"""The engine: actors, the controlled scheduler and its strategies, jitter and perturbation.

Private: reach it through :mod:`racetape`.
"""

"""Build steps for mvirt-one: one module per step, called from dodo.py.

dodo.py only declares the task graph; every action is one call into a function here.
"""

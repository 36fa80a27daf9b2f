"""sre-mini's test kit: the Python the checks and drills share (manifest reading, the pod harness, an HTTP client).

Run modules as `PYTHONPATH=tools python3 -m srekit.<module>` from the repository root. Only PyYAML is needed
(the check scripts install it with yamllint).
"""
